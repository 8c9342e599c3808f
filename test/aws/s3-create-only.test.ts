/**
 * Create-only writes. S3 enforces `If-None-Match: *` and answers 412 PreconditionFailed when the
 * object exists, or 409 ConditionalRequestConflict when another conditional write to the key is
 * in flight (AWS: retry the request). fauxqs does NOT enforce If-None-Match, so this test puts the
 * real S3Client in front of a stub endpoint on 127.0.0.1 that answers the way S3 does and checks
 * the adapter's translation: 412 to ALREADY_EXISTS, 409 to a retryable STORAGE_FAILURE.
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../functions/adapters/s3-object-store.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { TEST_CREDENTIALS } from './support/fauxqs.ts';

const s3Error = (code: string, message: string) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>r1</RequestId></Error>`;

describe('S3ObjectStore.create against S3 conditional-write answers', () => {
  let server: Server;
  let client: S3Client;
  const seen: { method: string; url: string; headers: IncomingHttpHeaders }[] = [];
  let answer: { status: number; body: string } = { status: 200, body: '' };

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      req.resume();
      req.on('end', () => {
        res.writeHead(answer.status, { 'content-type': 'application/xml', etag: '"e1"' });
        res.end(answer.body);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    client = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      region: 'us-east-1',
      credentials: TEST_CREDENTIALS,
      forcePathStyle: true,
      maxAttempts: 1,
    });
  });

  afterAll(async () => {
    client?.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  it('sends If-None-Match: * with the SHA-256 checksum and cache headers', async () => {
    // Prepare
    answer = { status: 200, body: '' };
    const store = new S3ObjectStore({ bucket: 'mirror', client });
    const body = new TextEncoder().encode('abc');
    // Act
    await store.create('manifests/7.json', body, {
      contentType: 'application/json',
      cacheControl: 'public, max-age=31536000, immutable',
      sha256: 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    });
    // Assess
    const req = seen.at(-1)!;
    expect(req.method).toBe('PUT');
    expect(req.url).toContain('/mirror/manifests/7.json');
    expect(req.headers['if-none-match']).toBe('*');
    expect(req.headers['x-amz-checksum-sha256']).toBe('ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=');
    expect(req.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('plain put sends no precondition', async () => {
    // Prepare
    answer = { status: 200, body: '' };
    const store = new S3ObjectStore({ bucket: 'mirror', client });
    // Act
    await store.put('manifests/latest.json', new Uint8Array([1]), { contentType: 'application/json' });
    // Assess
    expect(seen.at(-1)!.headers['if-none-match']).toBeUndefined();
  });

  it('translates 412 PreconditionFailed into ALREADY_EXISTS', async () => {
    // Prepare
    answer = {
      status: 412,
      body: s3Error('PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'),
    };
    const store = new S3ObjectStore({ bucket: 'mirror', client });
    // Act
    const err = await store
      .create('manifests/7.json', new Uint8Array([1]), { contentType: 'application/json' })
      .catch((e: unknown) => e);
    // Assess
    expect(err).toBeInstanceOf(WasmMirrorError);
    expect(err).toMatchObject({ code: 'ALREADY_EXISTS', retryable: false });
  });

  it('translates 409 ConditionalRequestConflict into a retryable STORAGE_FAILURE, not ALREADY_EXISTS', async () => {
    // Prepare
    answer = {
      status: 409,
      body: s3Error('ConditionalRequestConflict', 'A conflicting conditional operation is in progress'),
    };
    const store = new S3ObjectStore({ bucket: 'mirror', client });
    // Act
    // The race is undecided: the publisher must retry this version, not skip to the next one.
    const err = await store
      .create('manifests/8.json', new Uint8Array([1]), { contentType: 'application/json' })
      .catch((e: unknown) => e);
    // Assess
    expect(err).toBeInstanceOf(WasmMirrorError);
    expect(err).toMatchObject({ code: 'STORAGE_FAILURE', retryable: true });
  });

  it('a 412 on a plain put is a storage failure, not ALREADY_EXISTS', async () => {
    // Prepare
    answer = { status: 412, body: s3Error('PreconditionFailed', 'no') };
    const store = new S3ObjectStore({ bucket: 'mirror', client });
    // Act / Assess
    await expect(
      store.put('manifests/latest.json', new Uint8Array([1]), { contentType: 'application/json' }),
    ).rejects.toMatchObject({ code: 'STORAGE_FAILURE' });
  });

  it('5xx is a retryable storage failure', async () => {
    // Prepare
    answer = { status: 503, body: s3Error('SlowDown', 'Please reduce your request rate.') };
    const store = new S3ObjectStore({ bucket: 'mirror', client });
    // Act / Assess
    await expect(
      store.create('manifests/9.json', new Uint8Array([1]), { contentType: 'application/json' }),
    ).rejects.toMatchObject({ code: 'STORAGE_FAILURE', retryable: true });
  });
});
