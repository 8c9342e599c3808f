/**
 * The embedded mirror's HTTP face on its own: what it serves, how it answers conditional and
 * range requests, and that clients that walk away cost it nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import {
  createMirrorServer,
  listen,
  objectKeyFor,
  parseRange,
  redactUrl,
} from '../../shared/embedded/http-server.ts';
import { sha256Of } from '../support/mirror.ts';

describe('mirror HTTP server', () => {
  let dir: string;
  let server: Server;
  let url: string;
  const big = randomBytes(8 * 1024 * 1024);
  const hex = sha256Of(big);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-http-'));
    const store = await FsObjectStore.open({ root: dir });
    await store.create(`modules/sha256/${hex}.wasm`, big, { contentType: 'application/wasm', sha256: hex });
    server = createMirrorServer({
      store,
      receiveWebhook: async () => ({ status: 202, body: {} }),
      renderMetrics: () => '',
      status: async () => ({}),
      logger: silentLogger,
    });
    url = await listen(server, 0, '127.0.0.1');
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('maps only the public layout to storage keys', () => {
    expect(objectKeyFor('/keys.json')).toBe('keys.json');
    expect(objectKeyFor('/manifests/latest.json')).toBe('manifests/latest.json');
    expect(objectKeyFor('/manifests/42.json')).toBe('manifests/42.json');
    expect(objectKeyFor(`/modules/sha256/${hex}.wasm`)).toBe(`modules/sha256/${hex}.wasm`);
    for (const path of [
      '/manifests/0.json',
      '/manifests/x.json',
      '/modules/sha256/ABC.wasm',
      '/state/x',
      '/private/signing-key.pem',
      '/',
    ]) {
      expect(objectKeyFor(path), path).toBeUndefined();
    }
  });

  it('parses single byte ranges and refuses unsatisfiable ones', () => {
    expect(parseRange('bytes=0-3', 10)).toEqual({ start: 0, end: 3 });
    expect(parseRange('bytes=5-', 10)).toEqual({ start: 5, end: 9 });
    expect(parseRange('bytes=-4', 10)).toEqual({ start: 6, end: 9 });
    expect(parseRange('bytes=8-100', 10)).toEqual({ start: 8, end: 9 });
    expect(parseRange('bytes=10-', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=5-2', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,4-5', 10)).toBeUndefined();
    expect(parseRange('items=0-1', 10)).toBeUndefined();
  });

  it('serves ranges, 416 past the end, HEAD without a body', async () => {
    const tail = await fetch(`${url}/modules/sha256/${hex}.wasm`, { headers: { range: 'bytes=-16' } });
    expect(tail.status).toBe(206);
    expect(Buffer.from(await tail.arrayBuffer()).equals(big.subarray(big.length - 16))).toBe(true);
    const past = await fetch(`${url}/modules/sha256/${hex}.wasm`, {
      headers: { range: `bytes=${big.length}-` },
    });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${big.length}`);
    const head = await fetch(`${url}/modules/sha256/${hex}.wasm`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(big.length));
    expect(head.headers.get('cache-control')).toContain('immutable');
    const whole = await fetch(`${url}/modules/sha256/${hex}.wasm`);
    expect(sha256Of(new Uint8Array(await whole.arrayBuffer()))).toBe(hex);
  });

  it('releases the file of a download the client abandons', async () => {
    const openFds = () => readdirSync('/proc/self/fd').length;
    const abandon = () =>
      new Promise<void>((resolve, reject) => {
        let started = false;
        const req = request(`${url}/modules/sha256/${hex}.wasm`, (res) => {
          res.once('data', () => {
            started = true;
            req.destroy();
            resolve();
          });
        });
        // Only the abort itself may end in an error: a download that never started proves nothing.
        req.on('error', (err) => (started ? resolve() : reject(err)));
        req.end();
      });
    await abandon();
    const before = openFds();
    for (let i = 0; i < 40; i++) await abandon();
    // The server closes its files asynchronously: poll for that instead of trusting a fixed delay.
    const deadline = Date.now() + 10_000;
    while (openFds() - before >= 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(openFds() - before).toBeLessThan(5);
  });

  it('never logs the secret path token of a webhook URL', () => {
    expect(redactUrl('/hooks/quay/s3cr3t-token')).toBe('/hooks/quay/<redacted>');
    expect(redactUrl('/hooks/local')).toBe('/hooks/local');
    expect(redactUrl('/manifests/latest.json')).toBe('/manifests/latest.json');
  });
});
