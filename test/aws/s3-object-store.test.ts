import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../functions/adapters/s3-object-store.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import { type Emulator, startEmulator } from './support/fauxqs.ts';

const hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('S3ObjectStore on fauxqs', () => {
  let emu: Emulator;
  let store: S3ObjectStore;
  let scratch: string;

  beforeAll(async () => {
    emu = await startEmulator();
    await emu.createBucket('mirror');
    store = new S3ObjectStore({ bucket: 'mirror', client: emu.s3 });
    scratch = mkdtempSync(join(tmpdir(), 's3-store-'));
  });

  afterAll(async () => {
    await emu?.stop();
    if (scratch) rmSync(scratch, { recursive: true, force: true });
  });

  it('puts bytes with a SHA-256 checksum and reads them back', async () => {
    // Prepare
    const body = new TextEncoder().encode('{"hello":"world"}');
    // Act
    const info = await store.put('manifests/latest.json', body, {
      contentType: 'application/json',
      sha256: hex(body),
      cacheControl: 'max-age=60',
    });
    const got = await store.getBytes('manifests/latest.json', 1024);
    // Assess
    expect(info.size).toBe(body.byteLength);
    expect(Buffer.from(got!.bytes).toString()).toBe('{"hello":"world"}');
    expect(got!.info.contentType).toBe('application/json');
    // fauxqs does not keep Cache-Control; the header on the request is checked in s3-create-only.test.ts.
  });

  it('refuses bytes whose sha256 does not match before anything is written', async () => {
    // Prepare
    const body = new TextEncoder().encode('abc');
    // Act / Assess
    await expect(
      store.put('keys.json', body, { contentType: 'application/json', sha256: '0'.repeat(64) }),
    ).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await store.head('keys.json')).toBeUndefined();
  });

  it('streams a file larger than one part through a multipart upload', async () => {
    // Prepare
    const bytes = randomBytes(11 * 1024 * 1024 + 17);
    const path = join(scratch, 'big.wasm');
    writeFileSync(path, bytes);
    const small = new S3ObjectStore({ bucket: 'mirror', client: emu.s3, partSize: 5 * 1024 * 1024 });
    const key = `modules/sha256/${hex(bytes)}.wasm`;
    // Act
    const info = await small.put(
      key,
      { path, size: bytes.byteLength },
      {
        contentType: 'application/wasm',
        sha256: hex(bytes),
      },
    );
    // Assess
    expect(info.size).toBe(bytes.byteLength);
    const out = await emu.s3.send(new GetObjectCommand({ Bucket: 'mirror', Key: key }));
    const back = Buffer.from(await out.Body!.transformToByteArray());
    expect(hex(back)).toBe(hex(bytes));
    expect(out.Metadata?.sha256).toBe(hex(bytes));
  });

  it('uploads a small file in one PutObject and checks its digest first', async () => {
    // Prepare
    const bytes = randomBytes(1000);
    const path = join(scratch, 'small.wasm');
    writeFileSync(path, bytes);
    // Act / Assess
    await store.put(
      'modules/sha256/small.wasm',
      { path, size: bytes.byteLength },
      {
        contentType: 'application/wasm',
        sha256: hex(bytes),
      },
    );
    const got = await store.getBytes('modules/sha256/small.wasm', 2000);
    expect(hex(got!.bytes)).toBe(hex(bytes));
    await expect(
      store.put(
        'modules/sha256/other.wasm',
        { path, size: bytes.byteLength },
        {
          contentType: 'application/wasm',
          sha256: 'f'.repeat(64),
        },
      ),
    ).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('caps getBytes', async () => {
    // Prepare
    await store.put('blob', new Uint8Array(100), { contentType: 'application/octet-stream' });
    // Act / Assess
    const err = await store.getBytes('blob', 99).catch((e: unknown) => e);
    expect(isWasmMirrorError(err, 'SIZE_EXCEEDED')).toBe(true);
    expect(await store.getBytes('missing', 10)).toBeUndefined();
  });

  it('serves byte ranges and reports the whole size', async () => {
    // Prepare
    const body = new TextEncoder().encode('0123456789');
    await store.put('range.bin', body, { contentType: 'application/octet-stream' });
    // Act / Assess
    const s = await store.getStream('range.bin', { start: 2, end: 5 });
    const chunks: Uint8Array[] = [];
    for await (const c of s!.body) chunks.push(c);
    expect(Buffer.concat(chunks).toString()).toBe('2345');
    expect(s!.info.size).toBe(10);
    const open = await store.getStream('range.bin', { start: 7 });
    const rest: Uint8Array[] = [];
    for await (const c of open!.body) rest.push(c);
    expect(Buffer.concat(rest).toString()).toBe('789');
    expect(await store.getStream('nope')).toBeUndefined();
  });

  it('lists a prefix in lexicographic order across pages', async () => {
    // Prepare
    const keys = Array.from({ length: 1005 }, (_, i) => `list/${String(i).padStart(5, '0')}`);
    await Promise.all(keys.map((k) => store.put(k, new Uint8Array([1]), { contentType: 'text/plain' })));
    // Act
    const seen: string[] = [];
    for await (const info of store.list('list/')) seen.push(info.key);
    // Assess
    expect(seen).toEqual([...keys].sort());
  });

  it('creates once (fauxqs does not enforce If-None-Match, so only the first create is checked here)', async () => {
    // Act
    const info = await store.create('manifests/1.json', new Uint8Array([1, 2, 3]), {
      contentType: 'application/json',
    });
    // Assess
    expect(info.size).toBe(3);
    expect((await store.head('manifests/1.json'))?.size).toBe(3);
  });

  it('verifies with openssl that ChecksumSHA256 is the base64 of the hex digest', () => {
    // Prepare
    const body = Buffer.from('abc');
    const viaOpenssl = execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: body }).toString(
      'base64',
    );
    // Assess
    expect(Buffer.from(hex(body), 'hex').toString('base64')).toBe(viaOpenssl);
  });
});
