import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HttpClient, streamVerified } from '../../shared/agent/http.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import { sha256Hex } from '../manifest/helpers.ts';

const BODY = Buffer.alloc(100_000, 1);
let server: Server;
let base: string;
const client = new HttpClient({ maxSockets: 2, idleTimeoutMs: 5000 });

beforeAll(async () => {
  server = createServer((req, res) => {
    res.writeHead(200, { 'content-length': BODY.length });
    if (req.url === '/cut') res.write(BODY.subarray(0, 4000), () => res.destroy());
    else res.end(BODY);
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
    const got = await client.get(new URL(`${base}/cut`));
    // Wait for the cut itself rather than a fixed time, so the body is really gone before listening.
    const deadline = Date.now() + 10_000;
    while (!got.res.destroyed && Date.now() < deadline) await sleep(10);
    expect(got.res.destroyed).toBe(true);
    expect(await code(streamVerified(got.res, expected('/cut'), async () => {}))).toBe('LENGTH_MISMATCH');
  });

  it('passes exactly the verified bytes on, in batches', async () => {
    const got = await client.get(new URL(`${base}/ok`));
    const written: Buffer[] = [];
    await streamVerified(got.res, expected('/ok'), async (chunks) => {
      written.push(...chunks);
    });
    expect(Buffer.concat(written).equals(BODY)).toBe(true);
  });

  it('refuses bytes whose hash differs, after reading at most the listed size', async () => {
    const got = await client.get(new URL(`${base}/ok`));
    const r = streamVerified(got.res, { ...expected('/ok'), sha256: '0'.repeat(64) }, async () => {});
    expect(await code(r)).toBe('HASH_MISMATCH');
  });
});
