/**
 * The embedded runtime's HTTP face: webhooks in, the mirror out. Serves exactly the storage
 * layout's public objects (nothing else under the data directory is reachable), with strong
 * ETags, conditional GET and byte ranges, so agents and Istio can fetch from it as from a CDN.
 *
 * What a stranger can make it hold is bounded: connections are capped (more are dropped as they
 * arrive); a webhook's head is checked (source, secret, header or path-token proof) before a
 * byte of its body is read, and a refusal closes the connection; the bodies being read at once
 * share a byte budget (over it: 503 with Retry-After, the body unread), each must arrive within
 * a deadline, and none is kept once its delivery is answered.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { SHA256_HEX, storageKeys } from '../core/domain.ts';
import { isWasmMirrorError, toWasmMirrorError } from '../core/errors.ts';
import { v2Keys } from '../core/manifest/v2.ts';
import { metricNames } from '../core/metrics.ts';
import type {
  WebhookAdmission,
  WebhookHttpHead,
  WebhookHttpRequest,
  WebhookHttpResponse,
} from '../core/pipeline/receive.ts';
import type { ByteRange, Logger, Metrics, ObjectStore } from '../core/ports.ts';
import { noMetrics } from '../core/ports.ts';
import { cacheControls } from '../core/storage-keys.ts';
import { acceptsGzip, answerRange, etagMatches } from '../platform/http.ts';
import { PROMETHEUS_CONTENT_TYPE } from '../platform/telemetry.ts';

export { parseRange } from '../platform/http.ts';

import { serveStatusPage } from '../status-page/page.ts';
import { isOciTarget, type OciEndpoint } from './oci-endpoint.ts';

export interface MirrorHttpOptions {
  store: ObjectStore;
  receiveWebhook: (req: WebhookHttpRequest) => Promise<WebhookHttpResponse>;
  /** Checks a delivery's head before its body is read; without it every body is read (up to the cap). */
  admitWebhook?: (head: WebhookHttpHead) => Promise<WebhookAdmission>;
  renderMetrics: () => string | Promise<string>;
  status: () => Promise<unknown>;
  /** One page of dead letters (`/status/dead-letters?queue=&limit=&cursor=`). */
  deadLetters?: (query: URLSearchParams) => Promise<unknown>;
  /** `/healthz`: 200 when healthy, 503 otherwise, with the report as the body. Without it: always 200. */
  health?: () => Promise<HealthReport>;
  logger: Logger;
  metrics?: Metrics;
  /** Largest webhook body read; the rest is refused with 413 without being buffered. */
  maxWebhookBytes?: number;
  /** Concurrent connections; the ones past it are dropped as they arrive. @default 1024 */
  maxConnections?: number;
  /** Webhook body bytes being read at once, over all requests; one source gets half. @default 32 MiB */
  maxInFlightBodyBytes?: number;
  /** A webhook body must have arrived this long after its head, or the request gets a 408. @default 10 s */
  bodyTimeoutMs?: number;
  /** The read-only registry API: answers every `/v2` target, in the spec's error format. */
  oci?: OciEndpoint;
}

export interface HealthReport {
  healthy: boolean;
  body: Record<string, unknown>;
}

const DEFAULT_MAX_WEBHOOK_BYTES = 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_MAX_IN_FLIGHT_BODY_BYTES = 32 * 1024 * 1024;
const DEFAULT_BODY_TIMEOUT_MS = 10_000;
/** Seconds a sender refused for a full body budget waits: bodies in flight finish within the body timeout. */
const BUSY_RETRY_AFTER_SECONDS = 5;
const SOURCE_SEGMENT = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const TOKEN_SEGMENT = /^[A-Za-z0-9._~-]{1,512}$/;
const VERSION_FILE = /^[1-9][0-9]{0,15}\.json$/;

interface ServerState {
  options: MirrorHttpOptions;
  metrics: Metrics;
  budget: BodyBudget;
  maxWebhookBytes: number;
  bodyTimeoutMs: number;
}

export function createMirrorServer(options: MirrorHttpOptions): Server {
  const maxWebhookBytes = options.maxWebhookBytes ?? DEFAULT_MAX_WEBHOOK_BYTES;
  const metrics = options.metrics ?? noMetrics;
  const state: ServerState = {
    options,
    metrics,
    budget: new BodyBudget(
      Math.max(options.maxInFlightBodyBytes ?? DEFAULT_MAX_IN_FLIGHT_BODY_BYTES, maxWebhookBytes),
      maxWebhookBytes,
    ),
    maxWebhookBytes,
    bodyTimeoutMs: options.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(state, req, res).catch((err) => {
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
  };
  const server = createServer(onRequest);
  // `Expect: 100-continue` is answered only once the head is admitted (see handleWebhook), so
  // a refused sender never starts sending its body.
  server.on('checkContinue', onRequest);
  server.on('drop', () => metrics.count(metricNames.httpConnectionsDropped));
  server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
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

async function handle(state: ServerState, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { options } = state;
  // Before the target is normalized, so `/v2/../keys.json` is refused rather than resolved.
  if (options.oci !== undefined && isOciTarget(req.url)) return options.oci(req, res);
  const path = targetPath(req.url);
  const method = req.method ?? 'GET';
  if (path === undefined) {
    // The client's mistake, not ours: no error log, and no guessing what it meant.
    state.metrics.count(metricNames.httpRequestsRefused, { reason: 'bad-target' });
    return sendJson(
      res,
      400,
      { code: 'BAD_REQUEST', message: 'malformed request target' },
      { connection: 'close' },
    );
  }

  if (path.startsWith('/hooks/')) {
    if (method !== 'POST')
      return sendJson(res, 405, { code: 'USAGE', message: 'webhooks are POSTed' }, { allow: 'POST' });
    return handleWebhook(state, req, res, path.slice('/hooks/'.length).split('/'));
  }
  if (method !== 'GET' && method !== 'HEAD') {
    return sendJson(res, 405, { code: 'USAGE', message: 'method not allowed' }, { allow: 'GET, HEAD' });
  }
  if (path === '/healthz') {
    const report =
      options.health === undefined ? { healthy: true, body: { status: 'ok' } } : await options.health();
    return sendJson(res, report.healthy ? 200 : 503, report.body, { 'cache-control': 'no-store' });
  }
  if (path === '/metrics') {
    const text = await options.renderMetrics();
    res.writeHead(200, {
      'content-type': PROMETHEUS_CONTENT_TYPE,
      'cache-control': 'no-store',
    });
    res.end(method === 'HEAD' ? undefined : text);
    return;
  }
  if (path === '/status/dead-letters' && options.deadLetters !== undefined) {
    try {
      const page = await options.deadLetters(new URL(req.url ?? '/', 'http://mirror.invalid').searchParams);
      return sendJson(res, 200, page, { 'cache-control': 'no-store' });
    } catch (err) {
      if (!isWasmMirrorError(err, 'USAGE')) throw err;
      return sendJson(res, 400, { code: 'USAGE', message: (err as Error).message });
    }
  }
  if (path === '/status') return sendJson(res, 200, await options.status(), { 'cache-control': 'no-store' });
  if (path === '/' || path === '/index.html') return serveStatusPage(req, res, method === 'HEAD');

  const key = objectKeyFor(path);
  if (key === undefined) return sendJson(res, 404, { code: 'NOT_FOUND', message: 'not found' });
  return serveObject(options.store, key, req, res, method === 'HEAD');
}

/**
 * The path of a request target, dot segments resolved; undefined for a target that is neither
 * origin-form (`/path?query`, not `//…`, which URL parsing would take for an authority) nor an
 * absolute-form http(s) URL with a valid host.
 */
export function targetPath(target: string | undefined): string | undefined {
  if (target === undefined) return undefined;
  let url: URL;
  try {
    if (target.startsWith('/') && !target.startsWith('//')) url = new URL(`http://mirror.invalid${target}`);
    else if (/^https?:\/\/[^/?#]/i.test(target)) url = new URL(target);
    else return undefined;
  } catch {
    return undefined;
  }
  return url.pathname;
}

/** Maps a URL path to a public storage key, or undefined: only the layout's public objects are served. */
export function objectKeyFor(path: string): string | undefined {
  if (path === '/keys.json') return storageKeys.keys;
  if (path === '/manifests/latest.json') return storageKeys.latestManifest;
  const manifest = /^\/manifests\/([^/]+)$/.exec(path);
  if (manifest !== null && VERSION_FILE.test(manifest[1]!)) return `manifests/${manifest[1]}`;
  if (path === `/${v2Keys.index}`) return v2Keys.index;
  const indexVersion = /^\/manifests\/v2\/index\/([^/]+)\.json$/.exec(path);
  if (indexVersion !== null && /^[1-9][0-9]{0,15}$/.test(indexVersion[1]!))
    return v2Keys.indexVersion(Number(indexVersion[1]));
  const node = /^\/manifests\/v2\/nodes\/sha256\/([^/]+)\.json$/.exec(path);
  if (node !== null && SHA256_HEX.test(node[1]!)) return v2Keys.node(node[1]!);
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
  if (key.endsWith('.json')) {
    headers.vary = 'Accept-Encoding';
    if (acceptsGzip(req.headers['accept-encoding']) && req.headers.range === undefined) {
      return serveGzipped(store, key, info, headers, req, res, headOnly);
    }
  }
  if (etagMatches(req.headers['if-none-match'], info.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const answer = answerRange(req.headers, info.size, info.etag);
  if (answer.status === 416) {
    res.writeHead(416, { ...headers, ...answer.headers });
    res.end();
    return;
  }
  const range: ByteRange | undefined = answer.range;
  Object.assign(headers, answer.headers);
  if (headOnly) {
    res.writeHead(answer.status, headers);
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
  res.writeHead(answer.status, headers);
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

// JSON documents (manifests, the index, nodes, keys.json) go out gzipped when the client asks:
// agents poll them and they compress several-fold. Compressed once per version and kept in a
// small cache, as a precompressed file would be; modules (already dense) are sent as they are.
const GZIP_CACHE_LIMIT_BYTES = 32 * 1024 * 1024;
const MAX_GZIP_SOURCE_BYTES = 64 * 1024 * 1024;
const gzipCache = new Map<string, Uint8Array>();
let gzipCacheBytes = 0;

const gzipAsync = promisify(gzip);

async function serveGzipped(
  store: ObjectStore,
  key: string,
  info: { etag: string; size: number },
  headers: Record<string, string | number>,
  req: IncomingMessage,
  res: ServerResponse,
  headOnly: boolean,
): Promise<void> {
  // A representation of its own, so its validator differs from the identity one's.
  const etag = `"${info.etag.replace(/^W\//, '').replaceAll('"', '')}-gzip"`;
  const out: Record<string, string | number> = { ...headers, etag, 'content-encoding': 'gzip' };
  delete out['accept-ranges'];
  if (etagMatches(req.headers['if-none-match'], etag)) {
    res.writeHead(304, out);
    res.end();
    return;
  }
  const cacheKey = `${key}\n${info.etag}`;
  let body = gzipCache.get(cacheKey);
  if (body === undefined) {
    const got = await store.getBytes(key, MAX_GZIP_SOURCE_BYTES);
    if (got === undefined) return sendJson(res, 404, { code: 'NOT_FOUND', message: 'not found' });
    if (got.info.etag !== info.etag) return serveObject(store, key, req, res, headOnly);
    body = new Uint8Array(await gzipAsync(got.bytes));
    gzipCache.set(cacheKey, body);
    gzipCacheBytes += body.byteLength;
    for (const [k, v] of gzipCache) {
      if (gzipCacheBytes <= GZIP_CACHE_LIMIT_BYTES) break;
      gzipCache.delete(k);
      gzipCacheBytes -= v.byteLength;
    }
  }
  out['content-length'] = body.byteLength;
  res.writeHead(200, out);
  res.end(headOnly ? undefined : body);
}

function cacheControlFor(key: string): string {
  if (key === storageKeys.latestManifest || key === v2Keys.index) return cacheControls.latest;
  if (key === storageKeys.keys) return 'public, max-age=300';
  return cacheControls.immutable;
}

async function handleWebhook(
  state: ServerState,
  req: IncomingMessage,
  res: ServerResponse,
  segments: string[],
): Promise<void> {
  const { options } = state;
  const [sourceId, token, ...extra] = segments;
  if (
    sourceId === undefined ||
    !SOURCE_SEGMENT.test(sourceId) ||
    extra.length > 0 ||
    (token !== undefined && !TOKEN_SEGMENT.test(token))
  ) {
    return refuseUnread(res, 404, { code: 'WEBHOOK_UNKNOWN_SOURCE', message: 'no such webhook source' });
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const head: WebhookHttpHead = {
    sourceId,
    ...(token === undefined ? {} : { pathToken: decodeURIComponent(token) }),
    headers,
  };
  const admission: WebhookAdmission =
    options.admitWebhook === undefined
      ? { admitted: true, maxBodyBytes: state.maxWebhookBytes }
      : await options.admitWebhook(head);
  if (!admission.admitted) {
    const { status, body, headers: extraHeaders } = admission.response;
    return refuseUnread(res, status, body, extraHeaders);
  }

  const max = Math.min(state.maxWebhookBytes, admission.maxBodyBytes);
  const tooLarge = { code: 'WEBHOOK_TOO_LARGE', message: `webhook bodies are limited to ${max} bytes` };
  const declared = req.headers['content-length'];
  const declaredBytes = declared === undefined ? undefined : Number(declared);
  if (declaredBytes !== undefined && declaredBytes > max) return refuseUnread(res, 413, tooLarge);
  // No length and no transfer coding: HTTP/1.1 says there is no body.
  const reserved = declaredBytes ?? (req.headers['transfer-encoding'] === undefined ? 0 : max);
  if (!state.budget.reserve(sourceId, reserved)) {
    state.metrics.count(metricNames.httpRequestsRefused, { reason: 'body-budget' });
    return refuseUnread(
      res,
      503,
      { code: 'SERVER_BUSY', message: 'too many webhook bodies are being received; retry later' },
      { 'retry-after': String(BUSY_RETRY_AFTER_SECONDS) },
    );
  }
  try {
    if (req.headers.expect?.toLowerCase() === '100-continue') res.writeContinue();
    const body = await readBody(req, max, state.bodyTimeoutMs);
    if (body === 'aborted') return;
    if (body === 'too-large') return refuseUnread(res, 413, tooLarge);
    if (body === 'timeout') {
      state.metrics.count(metricNames.httpRequestsRefused, { reason: 'body-timeout' });
      return refuseUnread(res, 408, { code: 'REQUEST_TIMEOUT', message: 'the body did not arrive in time' });
    }
    const response = await options.receiveWebhook({ ...head, body });
    sendJson(res, response.status, response.body, response.headers);
  } finally {
    // Released only once the delivery is answered: its bytes are held until then.
    state.budget.release(sourceId, reserved);
  }
}

/** Answers without reading (the rest of) the body, and closes the connection instead of draining it. */
function refuseUnread(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  sendJson(res, status, body, { ...headers, connection: 'close' });
}

/**
 * Reads a body of at most `max` bytes within `timeoutMs`. Listeners are removed once it is
 * settled, so nothing keeps the chunks after the caller drops the result.
 */
function readBody(
  req: IncomingMessage,
  max: number,
  timeoutMs: number,
): Promise<Uint8Array | 'too-large' | 'timeout' | 'aborted'> {
  return new Promise((resolve) => {
    let chunks: Buffer[] = [];
    let total = 0;
    let settled = false;
    const settle = (result: Uint8Array | 'too-large' | 'timeout' | 'aborted') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onAbort);
      req.off('close', onAbort);
      chunks = [];
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      total += chunk.length;
      if (total > max) settle('too-large');
      else chunks.push(chunk);
    };
    const onEnd = () => settle(Buffer.concat(chunks, total));
    const onAbort = () => settle('aborted');
    const timer = setTimeout(() => settle('timeout'), timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onAbort);
    req.on('close', onAbort);
    // The client may have gone while the head was being checked.
    if (req.destroyed) settle('aborted');
  });
}

/**
 * Bytes of webhook bodies being read at once. One source may hold only part of it, so a flood
 * aimed at one source (say one whose proof is a body HMAC, checked only once the body is in)
 * leaves room for the others.
 */
class BodyBudget {
  private total = 0;
  private readonly bySource = new Map<string, number>();
  private readonly perSource: number;

  constructor(
    private readonly limit: number,
    largestBody: number,
  ) {
    this.perSource = Math.max(Math.floor(limit / 2), largestBody);
  }

  reserve(sourceId: string, bytes: number): boolean {
    if (bytes <= 0) return true;
    const held = this.bySource.get(sourceId) ?? 0;
    if (this.total + bytes > this.limit || held + bytes > this.perSource) return false;
    this.total += bytes;
    this.bySource.set(sourceId, held + bytes);
    return true;
  }

  release(sourceId: string, bytes: number): void {
    if (bytes <= 0) return;
    this.total -= bytes;
    const held = (this.bySource.get(sourceId) ?? 0) - bytes;
    if (held > 0) this.bySource.set(sourceId, held);
    else this.bySource.delete(sourceId);
  }
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
