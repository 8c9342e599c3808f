/**
 * Everything the Lambda handlers need, on 127.0.0.1: fauxqs (S3 + SQS) behind the
 * conditional-write proxy, the KMS and Secrets Manager stand-ins, a bucket and the two queues
 * shaped like the CDK app's (DLQs, redrive, FIFO publish queue). `runtime(role)` builds the
 * function's own composition root from an environment like the one the stack sets.
 */
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ENV, type FunctionRole, loadFunctionEnv } from '../../../functions/config.ts';
import { createKeysRuntime } from '../../../functions/roles/keys.ts';
import { createMirrorRuntime } from '../../../functions/roles/mirror.ts';
import { createPublishRuntime } from '../../../functions/roles/publish.ts';
import { createWebhookRuntime } from '../../../functions/roles/webhook.ts';
import type { AwsRuntime, RuntimeOverrides } from '../../../functions/runtime.ts';
import type { MirrorConfig } from '../../../shared/core/config.ts';
import { type ConditionalS3Proxy, startConditionalS3Proxy } from './conditional-s3.ts';
import { type Emulator, startEmulator, TEST_CREDENTIALS, TEST_REGION } from './fauxqs.ts';
import { type KmsStandIn, startKmsStandIn } from './kms-stand-in.ts';
import { type SecretsStandIn, startSecretsStandIn } from './secrets-stand-in.ts';

export const SECRETS_PREFIX = 'wasm-mirror/test/';

const ROOTS = {
  webhook: createWebhookRuntime,
  mirror: createMirrorRuntime,
  publish: createPublishRuntime,
  keys: createKeysRuntime,
} as const;

export interface AwsHarness {
  emu: Emulator;
  kms: KmsStandIn;
  secrets: SecretsStandIn;
  s3: S3Client;
  /** The S3 endpoint (create-only proxy in front of fauxqs). */
  s3Endpoint: string;
  bucket: string;
  mirrorQueue: { url: string; arn: string };
  mirrorDlq: { url: string; arn: string };
  publishQueue: { url: string; arn: string };
  publishDlq: { url: string; arn: string };
  runtime(role: FunctionRole, config: MirrorConfig, overrides?: RuntimeOverrides): Promise<AwsRuntime>;
  stop(): Promise<void>;
}

export async function startAwsHarness(
  secretValues: Record<string, string> = {},
  options: { secretsPrefix?: string } = {},
): Promise<AwsHarness> {
  const secretsPrefix = options.secretsPrefix ?? SECRETS_PREFIX;
  const emu = await startEmulator();
  const proxy: ConditionalS3Proxy = await startConditionalS3Proxy(emu.endpoint);
  const kms = await startKmsStandIn();
  const secrets = await startSecretsStandIn(
    Object.fromEntries(Object.entries(secretValues).map(([k, v]) => [`${secretsPrefix}${k}`, v])),
  );
  const common = { region: TEST_REGION, credentials: TEST_CREDENTIALS };
  const s3 = new S3Client({ ...common, endpoint: proxy.endpoint, forcePathStyle: true });
  const kmsClient = new KMSClient({ ...common, endpoint: kms.endpoint });
  const smClient = new SecretsManagerClient({ ...common, endpoint: secrets.endpoint });
  const bucket = 'wasm-mirror-test';
  await emu.createBucket(bucket);
  const mirrorDlq = await emu.createQueue('mirror-dlq');
  const mirrorQueue = await emu.createQueue('mirror', {
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: mirrorDlq.arn, maxReceiveCount: '3' }),
  });
  const publishDlq = await emu.createQueue('publish-dlq.fifo', { FifoQueue: 'true' });
  const publishQueue = await emu.createQueue('publish.fifo', {
    FifoQueue: 'true',
    ContentBasedDeduplication: 'true',
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: publishDlq.arn, maxReceiveCount: '3' }),
  });

  return {
    emu,
    kms,
    secrets,
    s3,
    s3Endpoint: proxy.endpoint,
    bucket,
    mirrorQueue,
    mirrorDlq,
    publishQueue,
    publishDlq,
    async runtime(role, config, overrides = {}) {
      // The environment the CDK stack gives each function, pointed at the emulators.
      const env = loadFunctionEnv(role, {
        [ENV.bucketName]: bucket,
        [ENV.mirrorQueueUrl]: mirrorQueue.url,
        [ENV.publishQueueUrl]: publishQueue.url,
        [ENV.signingKeyId]: kms.keyArn,
        [ENV.secretsPrefix]: secretsPrefix,
        [ENV.endpointUrl]: emu.endpoint,
        [ENV.s3ForcePathStyle]: 'true',
        AWS_REGION: TEST_REGION,
        POWERTOOLS_LOG_LEVEL: 'SILENT',
      });
      return ROOTS[role](env, {
        config,
        s3,
        sqs: emu.sqs,
        kms: kmsClient,
        secretsManager: smClient,
        ...overrides,
      });
    },
    async stop() {
      s3.destroy();
      kmsClient.destroy();
      smClient.destroy();
      await secrets.stop();
      await kms.stop();
      await proxy.stop();
      await emu.stop();
    },
  };
}
