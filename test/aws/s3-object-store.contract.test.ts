/**
 * The shared ObjectStore contract over S3ObjectStore, on fauxqs. fauxqs does not enforce
 * `If-None-Match: *`; the conditional-write proxy in front of it answers 412 the way S3 does,
 * so the create-only cases exercise the adapter's real translation path.
 */
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll } from 'vitest';
import { S3ObjectStore } from '../../functions/adapters/s3-object-store.ts';
import { describeObjectStoreContract } from '../contract/object-store.contract.ts';
import { type ConditionalS3Proxy, startConditionalS3Proxy } from './support/conditional-s3.ts';
import { type Emulator, startEmulator, TEST_CREDENTIALS, TEST_REGION } from './support/fauxqs.ts';

let emu: Emulator;
let proxy: ConditionalS3Proxy;
let client: S3Client;
let n = 0;

beforeAll(async () => {
  emu = await startEmulator();
  proxy = await startConditionalS3Proxy(emu.endpoint);
  client = new S3Client({
    endpoint: proxy.endpoint,
    region: TEST_REGION,
    credentials: TEST_CREDENTIALS,
    forcePathStyle: true,
  });
});

afterAll(async () => {
  client?.destroy();
  await proxy?.stop();
  await emu?.stop();
});

describeObjectStoreContract('S3ObjectStore (fauxqs + conditional-write proxy)', async () => {
  const bucket = `contract-${++n}`;
  await emu.createBucket(bucket);
  // Small parts so the 20 MiB case goes through a real multipart upload.
  return { store: new S3ObjectStore({ bucket, client, partSize: 5 * 1024 * 1024 }), cleanup: async () => {} };
});
