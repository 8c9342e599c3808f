/**
 * The keys.json custom resource's composition root: the bucket, the KMS keys (every published
 * one, for their public keys) and the publish queue (the startup re-sign).
 */
import { KMSClient } from '@aws-sdk/client-kms';
import { SQSClient } from '@aws-sdk/client-sqs';
import type { PublishRequest } from '../../shared/core/ports.ts';
import { KmsSigner } from '../adapters/kms-signer.ts';
import { SqsQueueProducer } from '../adapters/sqs-queue-producer.ts';
import type { FunctionEnv } from '../config.ts';
import { type AwsRuntime, composeRuntime, type RuntimeOverrides } from '../runtime.ts';

export function createKeysRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides = {},
): Promise<AwsRuntime> {
  return composeRuntime(env, overrides, ({ clientConfig, traced }) => {
    const kms = overrides.kms ?? traced(new KMSClient(clientConfig));
    const sqs = overrides.sqs ?? traced(new SQSClient(clientConfig));
    return {
      publishQueue: new SqsQueueProducer<PublishRequest>({ queueUrl: env.publishQueueUrl!, client: sqs }),
      signerFor: (keyId) => new KmsSigner({ keyId, client: kms }),
    };
  });
}
