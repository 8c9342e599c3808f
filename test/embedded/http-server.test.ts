/**
 * The embedded mirror's HTTP face on its own: what it serves, how it answers conditional and
 * range requests, that clients that walk away cost it nothing, and that a malformed request
 * is the client's error (400), never the server's.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { request, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { type Logger, silentLogger } from '../../shared/core/ports.ts';
import {
  createMirrorServer,
  listen,
  objectKeyFor,
  parseRange,
  redactUrl,
} from '../../shared/embedded/http-server.ts';
import { answerRange } from '../../shared/platform/http.ts';
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
    await store.put('manifests/v2/index.json', Buffer.from(JSON.stringify({ payload: 'x'.repeat(4000) })), {
      contentType: 'application/json',
    });
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

  it('sends JSON documents gzipped when asked, with their own validator, and modules as they are', async () => {
    // Prepare
    const get = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>((resolve, reject) => {
        request(`${url}${path}`, { headers }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
          );
        })
          .on('error', reject)
          .end();
      });

    // Act
    const plain = await get('/manifests/v2/index.json', {});
    const zipped = await get('/manifests/v2/index.json', { 'accept-encoding': 'br, gzip;q=0.8' });
    const again = await get('/manifests/v2/index.json', {
      'accept-encoding': 'gzip',
      'if-none-match': String(zipped.headers.etag),
    });
    const module = await get(`/modules/sha256/${hex}.wasm`, {
      'accept-encoding': 'gzip',
      range: 'bytes=0-9',
    });

    // Assess
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(zipped.headers.vary).toBe('Accept-Encoding');
    expect(zipped.body.byteLength).toBeLessThan(plain.body.byteLength / 4);
    expect((await import('node:zlib')).gunzipSync(zipped.body).equals(plain.body)).toBe(true);
    expect(zipped.headers.etag).not.toBe(plain.headers.etag);
    expect(again.status).toBe(304);
    expect(module.headers['content-encoding']).toBeUndefined();
    expect(module.status).toBe(206);
  });

  it('maps only the public layout to storage keys', () => {
    expect(objectKeyFor('/keys.json')).toBe('keys.json');
    expect(objectKeyFor('/manifests/latest.json')).toBe('manifests/latest.json');
    expect(objectKeyFor('/manifests/42.json')).toBe('manifests/42.json');
    expect(objectKeyFor('/manifests/v2/index.json')).toBe('manifests/v2/index.json');
    expect(objectKeyFor('/manifests/v2/index/7.json')).toBe('manifests/v2/index/7.json');
    expect(objectKeyFor(`/manifests/v2/nodes/sha256/${hex}.json`)).toBe(
      `manifests/v2/nodes/sha256/${hex}.json`,
    );
    expect(objectKeyFor('/manifests/v2/nodes/sha256/../x.json')).toBeUndefined();
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

  it('answers Range and If-Range with a status and the headers to send (every server shares this)', () => {
    expect(answerRange({ range: 'bytes=2-5' }, 10, '"v1"')).toEqual({
      status: 206,
      range: { start: 2, end: 5 },
      headers: { 'content-range': 'bytes 2-5/10', 'content-length': 4 },
    });
    // An If-Range naming another version: the whole body, as it is now.
    expect(answerRange({ range: 'bytes=2-5', 'if-range': '"v0"' }, 10, '"v1"')).toEqual({
      status: 200,
      range: undefined,
      headers: { 'content-length': 10 },
    });
    expect(answerRange({ range: 'bytes=2-5', 'if-range': '"v1"' }, 10, '"v1"').status).toBe(206);
    expect(answerRange({ range: 'bytes=10-' }, 10, '"v1"')).toEqual({
      status: 416,
      headers: { 'content-range': 'bytes */10' },
    });
    expect(answerRange({}, 10, '"v1"')).toMatchObject({ status: 200, headers: { 'content-length': 10 } });
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

  it('answers a malformed request target with 400 and logs no error', async () => {
    const errors: string[] = [];
    const logger: Logger = { ...silentLogger, error: (msg) => errors.push(msg) };
    const strict = createMirrorServer({
      store: await FsObjectStore.open({ root: dir }),
      receiveWebhook: async () => ({ status: 202, body: {} }),
      renderMetrics: () => '',
      status: async () => ({}),
      logger,
    });
    const base = new URL(await listen(strict, 0, '127.0.0.1'));
    try {
      // fetch would normalise these targets; a hostile client sends them as they are.
      for (const target of [
        '//[',
        '//@/healthz',
        '//evil.example/healthz',
        'http://[bad/healthz',
        'http://@/healthz',
        'http://%zz/healthz',
        'example.com:443',
        '*',
        'healthz',
      ]) {
        const status = await rawStatus(base, `GET ${target} HTTP/1.1`);
        expect(status, target).toBe(400);
      }
      expect(await rawStatus(base, 'POST //[ HTTP/1.1')).toBe(400);
      // Well-formed targets, origin-form and absolute-form, still work.
      expect(await rawStatus(base, 'GET /healthz HTTP/1.1')).toBe(200);
      expect(await rawStatus(base, 'GET http://mirror.example/healthz HTTP/1.1')).toBe(200);
      expect(errors).toEqual([]);
    } finally {
      strict.closeAllConnections();
      await new Promise((r) => strict.close(r));
    }
  });
});

/** The status code of one request written verbatim on a socket. */
function rawStatus(base: URL, requestLine: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect(Number(base.port), base.hostname);
    let reply = '';
    socket.setTimeout(5_000, () => socket.destroy(new Error(`no answer to ${requestLine}`)));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(reply);
      if (status === null) reject(new Error(`no status line for ${requestLine}: ${JSON.stringify(reply)}`));
      else resolve(Number(status[1]));
    });
    socket.end(`${requestLine}\r\nhost: mirror.example\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
}
