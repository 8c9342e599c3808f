/**
 * The embedded runtime's HTTP face: webhooks in, the mirror out. Serves exactly the storage
 * layout's public objects (nothing else under the data directory is reachable), with strong
 * ETags, conditional GET and byte ranges, so agents and Istio can fetch from it as from a CDN.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { SHA256_HEX, storageKeys } from '../core/domain.ts';
import { toWasmMirrorError } from '../core/errors.ts';
import type { WebhookHttpRequest, WebhookHttpResponse } from '../core/pipeline/receive.ts';
import type { ByteRange, Logger, ObjectStore } from '../core/ports.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../platform/telemetry.ts';

export interface MirrorHttpOptions {
  store: ObjectStore;
  receiveWebhook: (req: WebhookHttpRequest) => Promise<WebhookHttpResponse>;
  renderMetrics: () => string | Promise<string>;
  status: () => Promise<unknown>;
  logger: Logger;
  /** Largest webhook body read; the rest is refused with 413 without being buffered. */
  maxWebhookBytes?: number;
}

const DEFAULT_MAX_WEBHOOK_BYTES = 1024 * 1024;
const SOURCE_SEGMENT = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const TOKEN_SEGMENT = /^[A-Za-z0-9._~-]{1,512}$/;
const VERSION_FILE = /^[1-9][0-9]{0,15}\.json$/;

export function createMirrorServer(options: MirrorHttpOptions): Server {
  const server = createServer((req, res) => {
    handle(options, req, res).catch((err) => {
      const e = toWasmMirrorError(err);
      options.logger.error('request failed', {
        method: req.method,
        url: redactUrl(req.url),
        code: e.code,
        error: e.message,
      });
      if (!res.headersSent) sendJson(res, 500, { code: 'INTERNAL', message: 'internal error' });
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  return server;
}

/** Quay and Docker Hub deliveries carry their secret in the path: never log it. */
export function redactUrl(url: string | undefined): string {
  return (url ?? '').replace(/^(\/hooks\/[^/?]+\/)[^/?]+/, '$1<redacted>');
}

export async function listen(server: Server, port: number, host: string): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${shownHost}:${address.port}`;
}

async function handle(options: MirrorHttpOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://mirror.invalid');
  const path = url.pathname;
  const method = req.method ?? 'GET';

  if (path.startsWith('/hooks/')) {
    if (method !== 'POST')
      return sendJson(res, 405, { code: 'USAGE', message: 'webhooks are POSTed' }, { allow: 'POST' });
    return handleWebhook(options, req, res, path.slice('/hooks/'.length).split('/'));
  }
  if (method !== 'GET' && method !== 'HEAD') {
    return sendJson(res, 405, { code: 'USAGE', message: 'method not allowed' }, { allow: 'GET, HEAD' });
  }
  if (path === '/healthz') return sendJson(res, 200, { status: 'ok' });
  if (path === '/metrics') {
    const text = await options.renderMetrics();
    res.writeHead(200, {
      'content-type': PROMETHEUS_CONTENT_TYPE,
      'cache-control': 'no-store',
    });
    res.end(method === 'HEAD' ? undefined : text);
    return;
  }
  if (path === '/status') return sendJson(res, 200, await options.status(), { 'cache-control': 'no-store' });

  const key = objectKeyFor(path);
  if (key === undefined) return sendJson(res, 404, { code: 'NOT_FOUND', message: 'not found' });
  return serveObject(options.store, key, req, res, method === 'HEAD');
}

/** Maps a URL path to a public storage key, or undefined: only the layout's public objects are served. */
export function objectKeyFor(path: string): string | undefined {
  if (path === '/keys.json') return storageKeys.keys;
  if (path === '/manifests/latest.json') return storageKeys.latestManifest;
  const manifest = /^\/manifests\/([^/]+)$/.exec(path);
  if (manifest !== null && VERSION_FILE.test(manifest[1]!)) return `manifests/${manifest[1]}`;
  const module = /^\/modules\/sha256\/([^/]+)\.wasm$/.exec(path);
  if (module !== null && SHA256_HEX.test(module[1]!)) return storageKeys.module(module[1]!);
  return undefined;
}

async function serveObject(
  store: ObjectStore,
  key: string,
  req: IncomingMessage,
  res: ServerResponse,
  headOnly: boolean,
): Promise<void> {
  const info = await store.head(key);
  if (info === undefined) return sendJson(res, 404, { code: 'NOT_FOUND', message: 'not found' });
  const headers: Record<string, string | number> = {
    etag: info.etag,
    'accept-ranges': 'bytes',
    'content-type': info.contentType ?? 'application/octet-stream',
    'cache-control': cacheControlFor(key),
    'x-content-type-options': 'nosniff',
  };
  if (info.lastModified !== undefined) headers['last-modified'] = info.lastModified.toUTCString();
  if (etagMatches(req.headers['if-none-match'], info.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  let range: ByteRange | undefined;
  const rangeHeader = req.headers.range;
  // If-Range with a different validator means "send the whole thing".
  const ifRange = req.headers['if-range'];
  if (rangeHeader !== undefined && (ifRange === undefined || ifRange === info.etag)) {
    const parsed = parseRange(rangeHeader, info.size);
    if (parsed === 'unsatisfiable') {
      res.writeHead(416, { ...headers, 'content-range': `bytes */${info.size}` });
      res.end();
      return;
    }
    range = parsed;
  }
  if (range !== undefined) {
    const end = range.end ?? info.size - 1;
    headers['content-range'] = `bytes ${range.start}-${end}/${info.size}`;
    headers['content-length'] = end - range.start + 1;
  } else {
    headers['content-length'] = info.size;
  }
  if (headOnly) {
    res.writeHead(range === undefined ? 200 : 206, headers);
    res.end();
    return;
  }
  const stream = await store.getStream(key, range);
  if (stream === undefined) return sendJson(res, 404, { code: 'NOT_FOUND', message: 'not found' });
  if (stream.info.etag !== info.etag) {
    // latest.json was replaced between head and get: describe what is actually sent.
    discard(stream.body);
    return serveObject(store, key, req, res, headOnly);
  }
  res.writeHead(range === undefined ? 200 : 206, headers);
  try {
    // pipeline() handles backpressure and, when the client goes away, destroys the source.
    await pipeline(stream.body, res);
  } catch (err) {
    if (!res.destroyed) throw err;
  }
}

/** Releases an unread object stream (its file descriptor or socket). */
function discard(body: AsyncIterable<Uint8Array>): void {
  (body as { destroy?: () => void }).destroy?.();
}

function cacheControlFor(key: string): string {
  if (key === storageKeys.latestManifest) return 'public, max-age=30';
  if (key === storageKeys.keys) return 'public, max-age=300';
  return 'public, max-age=31536000, immutable';
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const strip = (t: string) => t.trim().replace(/^W\//, '');
  return header.split(',').some((t) => strip(t) === strip(etag));
}

/** One `bytes=` range (the form agents and Envoy use); multi-range requests get the whole body. */
export function parseRange(header: string, size: number): ByteRange | undefined | 'unsatisfiable' {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return undefined;
  const [, a, b] = match;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  if (start >= size) return 'unsatisfiable';
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (end < start) return 'unsatisfiable';
  return { start, end };
}

async function handleWebhook(
  options: MirrorHttpOptions,
  req: IncomingMessage,
  res: ServerResponse,
  segments: string[],
): Promise<void> {
  const [sourceId, token, ...extra] = segments;
  if (
    sourceId === undefined ||
    !SOURCE_SEGMENT.test(sourceId) ||
    extra.length > 0 ||
    (token !== undefined && !TOKEN_SEGMENT.test(token))
  ) {
    return sendJson(res, 404, { code: 'WEBHOOK_UNKNOWN_SOURCE', message: 'no such webhook source' });
  }
  const max = options.maxWebhookBytes ?? DEFAULT_MAX_WEBHOOK_BYTES;
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > max) {
    req.resume();
    return sendJson(
      res,
      413,
      { code: 'WEBHOOK_TOO_LARGE', message: `webhook bodies are limited to ${max} bytes` },
      { connection: 'close' },
    );
  }
  const body = await readBody(req, max);
  if (body === 'too-large') {
    return sendJson(
      res,
      413,
      { code: 'WEBHOOK_TOO_LARGE', message: `webhook bodies are limited to ${max} bytes` },
      { connection: 'close' },
    );
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const response = await options.receiveWebhook({
    sourceId,
    ...(token === undefined ? {} : { pathToken: decodeURIComponent(token) }),
    headers,
    body,
  });
  sendJson(res, response.status, response.body, response.headers);
}

function readBody(req: IncomingMessage, max: number): Promise<Uint8Array | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      total += chunk.length;
      if (total > max) {
        done = true;
        req.resume();
        resolve('too-large');
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks));
    });
    req.on('error', reject);
  });
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(text);
}
