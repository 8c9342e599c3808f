/**
 * The pull side of the OCI Distribution API over the mirror's own storage, so an `oci://`
 * WasmPlugin (or skopeo, oras, crane, a registry's pull-through proxy) switches to the mirror by
 * changing its host. `<name>` is `<sourceId>/<repository>`.
 *
 * What it answers is what the newest signed manifest lists (core/pipeline/oci-view.ts): a tag is
 * the digest listed for it, a digest only one a listed entry reaches, and the bytes are the
 * upstream bytes intake verified and kept. Anything else gets the spec's error, never bytes: a
 * path is read as it arrived, so `..`, percent-encoding (an encoded `/`) and empty segments are
 * refused before any routing, and every write method is 405.
 */
import { createHash } from 'node:crypto';
import { type FileHandle, open } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { FsObjectStore } from '../adapters/local/fs-object-store.ts';
import type { MirrorConfig } from '../core/config.ts';
import { SHA256_DIGEST } from '../core/domain.ts';
import { toWasmMirrorError } from '../core/errors.ts';
import { isValidOciName, type KeptContent, type OciLookup, OciView } from '../core/pipeline/oci-view.ts';
import type { ByteRange, Logger, ObjectStore } from '../core/ports.ts';
import { cacheControls, storageKeys } from '../core/storage-keys.ts';
import { answerRange, etagMatches } from '../platform/http.ts';

export type OciEndpoint = (req: IncomingMessage, res: ServerResponse) => Promise<void>;

export interface OciEndpointOptions {
  store: ObjectStore;
  config: Pick<MirrorConfig, 'sources'>;
  logger: Logger;
}

/** Error codes of the distribution spec that this endpoint answers with. */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'UNSUPPORTED'
  | 'UNKNOWN';

const API_VERSION = { 'docker-distribution-api-version': 'registry/2.0' } as const;
/** Far above a Wasm image's manifest; the puller caps what it accepts at 4 MiB too. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_TAGS_PAGE = 10_000;
/** The digest grammar of the image spec, for telling an unknown algorithm from garbage. */
const ANY_DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/** The request target's path exactly as sent (no dot segments resolved, nothing decoded). */
export function rawPathOf(target: string | undefined): string | undefined {
  if (target === undefined) return undefined;
  let rest = target;
  const authority = /^https?:\/\/[^/?#]*/i.exec(rest);
  if (authority !== null) rest = rest.slice(authority[0].length) || '/';
  if (!rest.startsWith('/')) return undefined;
  const end = rest.search(/[?#]/);
  return end === -1 ? rest : rest.slice(0, end);
}

/** True for `/v2` and everything under `/v2/`: the registry API answers those, in its own error format. */
export function isOciTarget(target: string | undefined): boolean {
  const path = rawPathOf(target);
  return path === '/v2' || path?.startsWith('/v2/') === true;
}

export function createOciEndpoint(options: OciEndpointOptions): OciEndpoint {
  const view = new OciView({ store: options.store, config: options.config });
  return async (req, res) => {
    try {
      await route(view, options.store, req, res);
    } catch (err) {
      const e = toWasmMirrorError(err);
      options.logger.error('registry API request failed', {
        method: req.method,
        url: req.url,
        code: e.code,
        error: e.message,
      });
      if (!res.headersSent) sendError(res, 500, 'UNKNOWN', 'internal error');
      else res.destroy();
    }
  };
}

async function route(
  view: OciView,
  store: ObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const method = req.method ?? 'GET';
  const head = method === 'HEAD';
  if (method !== 'GET' && !head) {
    return sendError(res, 405, 'UNSUPPORTED', 'this registry is read-only', { allow: 'GET, HEAD' });
  }
  const path = rawPathOf(req.url) ?? '';
  if (path === '/v2' || path === '/v2/') return sendJson(res, 200, {}, head);

  const rest = path.slice('/v2/'.length);
  if (/[%\\]/.test(rest) || rest.split('/').some((s) => s === '' || s === '.' || s === '..')) {
    return sendError(
      res,
      400,
      'NAME_INVALID',
      'a path must not hold percent-encoded characters, empty segments, or . or .. segments',
    );
  }
  const tags = /^(.+)\/tags\/list$/.exec(rest);
  const manifest = /^(.+)\/manifests\/([^/]+)$/.exec(rest);
  const blob = /^(.+)\/blobs\/([^/]+)$/.exec(rest);
  const name = (tags ?? manifest ?? blob)?.[1];
  if (name === undefined) {
    return sendError(
      res,
      404,
      'UNSUPPORTED',
      'no such endpoint: this registry serves manifests, blobs and tags',
    );
  }
  if (!isValidOciName(name)) {
    return sendError(res, 400, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name)}`);
  }
  if (tags !== null) return serveTags(view, req, res, name, head);
  if (manifest !== null) return serveManifest(view, store, req, res, name, manifest[2]!, head);
  return serveBlob(view, store, req, res, name, blob![2]!, head);
}

async function serveTags(
  view: OciView,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  head: boolean,
): Promise<void> {
  const query = new URL(req.url ?? '/', 'http://mirror.invalid').searchParams;
  const nText = query.get('n');
  if (nText !== null && !/^\d{1,9}$/.test(nText)) {
    return sendError(res, 400, 'UNSUPPORTED', 'n must be a whole number');
  }
  const found = await view.tags(name);
  if (!found.found) return sendUnknown(res, found, name);
  const last = query.get('last');
  let page = last === null ? found.value : found.value.filter((t) => t > last);
  const n = nText === null ? undefined : Math.min(Number(nText), MAX_TAGS_PAGE);
  const headers: Record<string, string> = {};
  if (n !== undefined && page.length > n) {
    page = page.slice(0, n);
    const next = new URLSearchParams({ n: String(n), last: page.at(-1) ?? '' });
    headers.link = `</v2/${name}/tags/list?${next}>; rel="next"`;
  }
  return sendJson(res, 200, { name, tags: page }, head, { ...headers, 'cache-control': 'no-cache' });
}

async function serveManifest(
  view: OciView,
  store: ObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  reference: string,
  head: boolean,
): Promise<void> {
  const byDigest = reference.includes(':');
  const problem = byDigest ? digestProblem(reference) : undefined;
  if (problem === 'unsupported') return sendUnknown(res, { found: false, code: 'MANIFEST_UNKNOWN' }, name);
  if (problem === 'invalid') {
    return sendError(res, 400, 'DIGEST_INVALID', `invalid digest ${JSON.stringify(reference)}`);
  }
  if (!byDigest && !TAG.test(reference)) {
    return sendUnknown(res, { found: false, code: 'MANIFEST_UNKNOWN' }, name);
  }
  const found = await view.manifest(name, reference);
  if (!found.found) return sendUnknown(res, found, name);
  const kept = found.value;
  const stored = await store.getBytes(storageKeys.blob(kept.digest.slice(7)), MAX_MANIFEST_BYTES);
  if (stored === undefined) return sendUnknown(res, { found: false, code: 'MANIFEST_UNKNOWN' }, name);
  // Small enough to check on every request: storage that changed under us is never served.
  const actual = `sha256:${createHash('sha256').update(stored.bytes).digest('hex')}`;
  if (actual !== kept.digest) throw new Error(`stored manifest ${kept.digest} has digest ${actual}`);
  const headers = contentHeaders(kept, byDigest);
  if (etagMatches(req.headers['if-none-match'], `"${kept.digest}"`)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': stored.bytes.length });
  res.end(head ? undefined : stored.bytes);
}

async function serveBlob(
  view: OciView,
  store: ObjectStore,
  req: IncomingMessage,
  res: ServerResponse,
  name: string,
  digest: string,
  head: boolean,
): Promise<void> {
  const problem = digestProblem(digest);
  if (problem === 'unsupported') return sendUnknown(res, { found: false, code: 'BLOB_UNKNOWN' }, name);
  if (problem === 'invalid') {
    return sendError(res, 400, 'DIGEST_INVALID', `invalid digest ${JSON.stringify(digest)}`);
  }
  const found = await view.blob(name, digest);
  if (!found.found) return sendUnknown(res, found, name);
  const kept = found.value;
  const key = storageKeys.blob(digest.slice(7));
  const info = await store.head(key);
  if (info === undefined) return sendUnknown(res, { found: false, code: 'BLOB_UNKNOWN' }, name);
  if (info.size !== kept.size)
    throw new Error(`stored blob ${digest} is ${info.size} bytes, not ${kept.size}`);
  const headers: Record<string, string | number> = {
    ...contentHeaders(kept, true),
    'accept-ranges': 'bytes',
  };
  if (etagMatches(req.headers['if-none-match'], `"${kept.digest}"`)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const answer = answerRange(req.headers, info.size, `"${kept.digest}"`);
  if (answer.status === 416) {
    res.writeHead(416, { ...API_VERSION, ...answer.headers });
    res.end();
    return;
  }
  const range: ByteRange | undefined = answer.range;
  Object.assign(headers, answer.headers);
  const { status } = answer;
  if (head) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const first = range?.start ?? 0;
  const last = range?.end ?? info.size - 1;
  if (store instanceof FsObjectStore) {
    const handle = await openIfExists(store.pathOf(key));
    if (handle === undefined) return sendUnknown(res, { found: false, code: 'BLOB_UNKNOWN' }, name);
    res.writeHead(status, headers);
    try {
      await sendFileRange(handle, first, last, res);
    } finally {
      await handle.close().catch(() => {});
    }
    return;
  }
  const stream = await store.getStream(key, range);
  if (stream === undefined) return sendUnknown(res, { found: false, code: 'BLOB_UNKNOWN' }, name);
  res.writeHead(status, headers);
  try {
    // pipeline() handles backpressure and, when the client goes away, destroys the source.
    await pipeline(stream.body, res);
  } catch (err) {
    if (!res.destroyed) throw err;
  }
}

async function openIfExists(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Two reused buffers: a layer is hundreds of chunks, and a fresh buffer each is mostly garbage collection. */
const SEND_CHUNK = 1024 * 1024;

/**
 * Sends bytes `first`..`last` of a file: one buffer is read while the other is being written, and
 * a buffer is read into again only once the socket has taken it. Stops when the client goes away.
 */
async function sendFileRange(
  handle: FileHandle,
  first: number,
  last: number,
  res: ServerResponse,
): Promise<void> {
  const buffers = [Buffer.allocUnsafeSlow(SEND_CHUNK), Buffer.allocUnsafeSlow(SEND_CHUNK)];
  const written: Promise<boolean>[] = [Promise.resolve(true), Promise.resolve(true)];
  const closed = new Promise<boolean>((resolve) => res.once('close', () => resolve(false)));
  let position = first;
  for (let i = 0; position <= last; i ^= 1) {
    if (!(await Promise.race([written[i]!, closed]))) return;
    const buffer = buffers[i]!;
    const { bytesRead } = await handle.read(buffer, 0, Math.min(SEND_CHUNK, last - position + 1), position);
    if (bytesRead === 0) throw new Error(`file ended at byte ${position} of ${last + 1}`);
    position += bytesRead;
    written[i] = new Promise((resolve) => res.write(buffer.subarray(0, bytesRead), (err) => resolve(!err)));
  }
  await Promise.race([Promise.all(written), closed]);
  if (!res.destroyed) res.end();
}

/** Only sha256 content is kept: another algorithm is unknown here, a malformed digest is invalid. */
function digestProblem(digest: string): 'invalid' | 'unsupported' | undefined {
  if (SHA256_DIGEST.test(digest)) return undefined;
  return digest.startsWith('sha256:') || !ANY_DIGEST.test(digest) ? 'invalid' : 'unsupported';
}

function contentHeaders(kept: KeptContent, immutable: boolean): Record<string, string> {
  return {
    ...API_VERSION,
    'content-type': kept.mediaType,
    'docker-content-digest': kept.digest,
    etag: `"${kept.digest}"`,
    // A digest names the same bytes forever; a tag may be listed at another digest by the next publish.
    'cache-control': immutable ? cacheControls.immutable : 'no-cache',
    'x-content-type-options': 'nosniff',
  };
}

function sendUnknown(res: ServerResponse, lookup: OciLookup<unknown> & { found: false }, name: string): void {
  const messages: Record<typeof lookup.code, string> = {
    NAME_UNKNOWN: `repository ${name} is not served by this mirror`,
    MANIFEST_UNKNOWN: `manifest unknown to ${name}: only what the signed manifest lists is served`,
    BLOB_UNKNOWN: `blob unknown to ${name}: only what a listed manifest reaches is served`,
  };
  sendError(res, 404, lookup.code, messages[lookup.code], {}, { name });
}

function sendError(
  res: ServerResponse,
  status: number,
  code: OciErrorCode,
  message: string,
  headers: Record<string, string> = {},
  detail?: Record<string, string>,
): void {
  const error = detail === undefined ? { code, message } : { code, message, detail };
  sendJson(res, status, { errors: [error] }, false, headers);
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  head: boolean,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...API_VERSION,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(head ? undefined : text);
}
