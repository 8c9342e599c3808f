/** The webhook function's composition root: the bucket (delivery markers), the mirror queue, webhook secrets. */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { MirrorJob } from '../../shared/core/domain.ts';
import { SecretsManagerSecretSource } from '../adapters/secrets.ts';
import { SqsQueueProducer } from '../adapters/sqs-queue-producer.ts';
import type { FunctionEnv } from '../config.ts';
import { type AwsRuntime, composeRuntime, type RuntimeOverrides } from '../runtime.ts';

export function createWebhookRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides = {},
): Promise<AwsRuntime> {
  return composeRuntime(env, overrides, ({ clientConfig, traced }) => {
    const sqs = overrides.sqs ?? traced(new SQSClient(clientConfig));
    return {
      mirrorQueue: new SqsQueueProducer<MirrorJob>({ queueUrl: env.mirrorQueueUrl!, client: sqs }),
      secrets:
        overrides.secrets ??
        new SecretsManagerSecretSource({
          prefix: env.secretsPrefix,
          client: overrides.secretsManager ?? traced(new SecretsManagerClient(clientConfig)),
        }),
    };
  });
}
