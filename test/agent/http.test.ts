import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient, readCapped, readDocument, streamVerified } from '../../shared/agent/http.ts';
import { isWasmMirrorError, WasmMirrorError } from '../../shared/core/errors.ts';
import { sha256Hex } from '../manifest/helpers.ts';

const BODY = Buffer.alloc(100_000, 1);
const BIG = Buffer.alloc(3 * 1024 * 1024 + 5, 2);
const ENCODED: Record<string, { encoding: string; body: Buffer }> = {
  '/gzip': { encoding: 'gzip', body: gzipSync(BODY) },
  '/br': { encoding: 'br', body: brotliCompressSync(BODY) },
  '/bomb': { encoding: 'gzip', body: gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 }) },
  '/corrupt': { encoding: 'gzip', body: Buffer.from('not gzip at all') },
  '/deflate': { encoding: 'deflate', body: Buffer.from('x') },
};
let server: Server;
let base: string;
const client = new HttpClient({ maxSockets: 2, idleTimeoutMs: 5000 });

beforeAll(async () => {
  server = createServer((req, res) => {
    const encoded = ENCODED[req.url ?? ''];
    if (encoded !== undefined) {
      res.writeHead(200, { 'content-encoding': encoded.encoding, 'content-length': encoded.body.length });
      return void res.end(encoded.body);
    }
    // Chunked: no Content-Length, so a cap can only be enforced while reading.
    const body = req.url === '/big' ? BIG : BODY;
    res.writeHead(200, req.url === '/chunked' ? {} : { 'content-length': body.length });
    if (req.url === '/cut') res.write(body.subarray(0, 4000), () => res.destroy());
    else res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  client.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

async function code(p: Promise<unknown>) {
  try {
    await p;
    return 'OK';
  } catch (err) {
    return isWasmMirrorError(err) ? err.code : String(err);
  }
}

describe('streamVerified', () => {
  const expected = (url: string) => ({ size: BODY.length, sha256: sha256Hex(BODY), url });

  it('reports a body cut off before it started listening, instead of waiting forever', async () => {
    // Prepare: wait for the cut itself, so the body is really gone before listening.
    const got = await client.get(new URL(`${base}/cut`));
    if (!got.res.destroyed) await new Promise((resolve) => got.res.once('close', resolve));
    expect(got.res.destroyed).toBe(true);

    // Act
    const result = await code(streamVerified(got.res, expected('/cut'), async () => {}));

    // Assess: the connection was lost, which says nothing about the bytes
    expect(result).toBe('MIRROR_UNAVAILABLE');
  });

  it('passes exactly the verified bytes on, in batches', async () => {
    const got = await client.get(new URL(`${base}/ok`));
    const written: Buffer[] = [];
    await streamVerified(got.res, expected('/ok'), async (chunks) => {
      written.push(...chunks);
    });
    expect(Buffer.concat(written).equals(BODY)).toBe(true);
  });

  it('does not count time spent writing to disk as a stall', async () => {
    // Prepare: a body of several write batches, each written slower than the stall timeout
    const got = await client.get(new URL(`${base}/big`));
    const written: Buffer[] = [];

    // Act
    await streamVerified(
      got.res,
      { size: BIG.length, sha256: sha256Hex(BIG), url: '/big' },
      async (chunks) => {
        written.push(...chunks);
        await new Promise((resolve) => setTimeout(resolve, 150));
      },
      { stallTimeoutMs: 100 },
    );

    // Assess
    expect(Buffer.concat(written).equals(BIG)).toBe(true);
  });

  it('refuses bytes whose hash differs, after reading at most the listed size', async () => {
    const got = await client.get(new URL(`${base}/ok`));
    const r = streamVerified(got.res, { ...expected('/ok'), sha256: '0'.repeat(64) }, async () => {});
    expect(await code(r)).toBe('HASH_MISMATCH');
  });
});

describe('readCapped', () => {
  const tooLarge = (n: number) => new WasmMirrorError('MANIFEST_TOO_LARGE', `${n} bytes`);

  it('reads a body within the cap', async () => {
    // Prepare
    const got = await client.get(new URL(`${base}/ok`));

    // Act
    const bytes = await readCapped(got.res, BODY.length, tooLarge);

    // Assess
    expect(Buffer.from(bytes).equals(BODY)).toBe(true);
  });

  it('refuses a declared length over the cap before reading, and cuts the response off', async () => {
    // Prepare
    const got = await client.get(new URL(`${base}/ok`));

    // Act
    const err = await readCapped(got.res, 1000, tooLarge).catch((e: unknown) => e);

    // Assess
    expect(isWasmMirrorError(err, 'MANIFEST_TOO_LARGE')).toBe(true);
    expect((err as Error).message).toBe(`${BODY.length} bytes`);
    expect(got.res.destroyed).toBe(true);
  });

  it('stops an undeclared body at the cap, and cuts the response off', async () => {
    // Prepare
    const got = await client.get(new URL(`${base}/chunked`));

    // Act
    const err = await readCapped(got.res, 1000, tooLarge).catch((e: unknown) => e);

    // Assess
    expect(isWasmMirrorError(err, 'MANIFEST_TOO_LARGE')).toBe(true);
    expect(got.res.destroyed).toBe(true);
  });

  it('answers a connection cut mid-body with MIRROR_UNAVAILABLE', async () => {
    // Prepare
    const got = await client.get(new URL(`${base}/cut`));

    // Act
    const result = await code(readCapped(got.res, BODY.length, tooLarge));

    // Assess
    expect(result).toBe('MIRROR_UNAVAILABLE');
  });
});

describe('readDocument', () => {
  const options = {
    maxBytes: BODY.length,
    tooLarge: (n: number) => new WasmMirrorError('MANIFEST_TOO_LARGE', `${n} bytes`),
    bomb: () => new WasmMirrorError('DECOMPRESSION_BOMB', 'inflates past the cap'),
  };

  it('decodes gzip and br, counting the bytes on the wire', async () => {
    for (const path of ['/gzip', '/br']) {
      // Prepare
      const got = await client.get(new URL(`${base}${path}`));
      let wire = 0;

      // Act
      const bytes = await readDocument(got.res, { ...options, onWireBytes: (n) => (wire += n) });

      // Assess
      expect(Buffer.from(bytes).equals(BODY), path).toBe(true);
      expect(wire, path).toBe(ENCODED[path]!.body.length);
    }
  });

  it('stops a body that inflates past the cap: DECOMPRESSION_BOMB, within the cap in memory', async () => {
    // Prepare
    const got = await client.get(new URL(`${base}/bomb`));
    const before = process.memoryUsage().arrayBuffers;

    // Act
    const result = await code(readDocument(got.res, options));

    // Assess
    expect(result).toBe('DECOMPRESSION_BOMB');
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
  });

  it('answers a corrupt or unrequested encoding with MIRROR_UNAVAILABLE', async () => {
    for (const path of ['/corrupt', '/deflate']) {
      const got = await client.get(new URL(`${base}${path}`));
      expect(await code(readDocument(got.res, options)), path).toBe('MIRROR_UNAVAILABLE');
    }
  });

  it('refuses a plain body over the cap as too large', async () => {
    const got = await client.get(new URL(`${base}/chunked`));
    expect(await code(readDocument(got.res, { ...options, maxBytes: 1000 }))).toBe('MANIFEST_TOO_LARGE');
  });
});
