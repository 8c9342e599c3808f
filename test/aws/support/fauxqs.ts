/**
 * fauxqs (S3 + SQS emulator) in-process on 127.0.0.1 with a random port, and SDK clients pointed
 * at it. `startFauxqs` binds 0.0.0.0, so the app is built and bound here instead. Path-style S3
 * because there is no wildcard DNS offline.
 */
import type { AddressInfo } from 'node:net';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { buildApp } from 'fauxqs';

export const TEST_REGION = 'us-east-1';
export const TEST_CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' };

export interface Emulator {
  endpoint: string;
  s3: S3Client;
  sqs: SQSClient;
  clientConfig: { endpoint: string; region: string; credentials: typeof TEST_CREDENTIALS };
  createBucket(name: string): Promise<void>;
  createQueue(name: string, attributes?: Record<string, string>): Promise<{ url: string; arn: string }>;
  stop(): Promise<void>;
}

export async function startEmulator(): Promise<Emulator> {
  const app = buildApp({ logger: false, defaultRegion: TEST_REGION });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const { port } = app.server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  const clientConfig = { endpoint, region: TEST_REGION, credentials: TEST_CREDENTIALS };
  const s3 = new S3Client({ ...clientConfig, forcePathStyle: true });
  const sqs = new SQSClient(clientConfig);
  return {
    endpoint,
    s3,
    sqs,
    clientConfig,
    async createBucket(name) {
      await s3.send(new CreateBucketCommand({ Bucket: name }));
    },
    async createQueue(name, attributes) {
      const out = await sqs.send(
        new CreateQueueCommand({ QueueName: name, ...(attributes ? { Attributes: attributes } : {}) }),
      );
      const url = out.QueueUrl!;
      const attrs = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }),
      );
      return { url, arn: attrs.Attributes!.QueueArn! };
    },
    async stop() {
      s3.destroy();
      sqs.destroy();
      await app.close();
    },
  };
}
