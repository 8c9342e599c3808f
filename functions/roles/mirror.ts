/**
 * The mirror function's composition root: the registry client, pull credentials (secrets the
 * config names, or an ECR token from the function's role), the bucket, and both queues (results
 * to the publisher; reconcile queues what changed on its own queue).
 */
import { ECRClient } from '@aws-sdk/client-ecr';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { MirrorJob } from '../../shared/core/domain.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import { EcrCredentials } from '../adapters/ecr-credentials.ts';
import { SecretsManagerSecretSource } from '../adapters/secrets.ts';
import { SqsQueueProducer } from '../adapters/sqs-queue-producer.ts';
import type { FunctionEnv } from '../config.ts';
import { type AwsRuntime, composeRuntime, type RuntimeOverrides } from '../runtime.ts';

export function createMirrorRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides = {},
): Promise<AwsRuntime> {
  return composeRuntime(env, overrides, ({ config, clientConfig, traced }) => {
    const sqs = overrides.sqs ?? traced(new SQSClient(clientConfig));
    // One client per registry region, built on the first pull from it.
    const ecr = new EcrCredentials({
      clientFor: (region) => traced(new ECRClient({ ...clientConfig, region })),
    });
    return {
      mirrorQueue: new SqsQueueProducer<MirrorJob>({ queueUrl: env.mirrorQueueUrl!, client: sqs }),
      publishQueue: new SqsQueueProducer<PublishRequest>({ queueUrl: env.publishQueueUrl!, client: sqs }),
      puller: overrides.puller ?? new OciWasmPuller({ maxModuleBytes: config.mirror.maxModuleBytes }),
      secrets:
        overrides.secrets ??
        new SecretsManagerSecretSource({
          prefix: env.secretsPrefix,
          client: overrides.secretsManager ?? traced(new SecretsManagerClient(clientConfig)),
        }),
      registryCredentials: (source) => ecr.forSource(source),
    };
  });
}
