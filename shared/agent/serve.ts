/**
 * `--serve ADDR`: the agent serves what it holds, read-only, in the mirror's own layout, so the
 * node agents of a cluster can sync from one cluster agent and the CDN sees one poller per
 * cluster. Only these paths exist; anything else is a 404, there are no directory listings, and
 * a path is never joined onto the directory (each route names its file from a fixed name or a
 * validated sha256), so no request can reach another file:
 *
 *   GET /manifests/v2/index.json                 the index, as received
 *   GET /manifests/v2/nodes/sha256/<hex>.json    the nodes this agent walked, as received
 *   GET /manifests/latest.json                   v1's manifest, from a mirror without v2
 *   GET /keys.json                               the mirror's keys.json, as received
 *   GET /modules/sha256/<hex>.wasm               verified module bytes; Range supported
 *
 * ETag and If-None-Match on everything, gzip for JSON when asked. Trust does not depend on this
 * server: the documents are the mirror's signed and hash-pinned bytes, and an agent below
 * verifies them exactly as it would verify the mirror.
 */
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { gzip as gzipCallback } from 'node:zlib';
import { cacheControls } from '../core/storage-keys.ts';
import { acceptsGzip, answerRange, etagMatches } from '../platform/http.ts';
import { parseListenAddress } from './metrics-server.ts';

const gzip = promisify(gzipCallback);

type Route =
  | { kind: 'json'; file: string; cacheControl: string; etag?: string }
  | { kind: 'module'; file: string; etag: string };

const NODE_PATH = /^\/manifests\/v2\/nodes\/sha256\/([0-9a-f]{64})\.json$/;
const MODULE_PATH = /^\/modules\/sha256\/([0-9a-f]{64})\.wasm$/;
const IMMUTABLE = cacheControls.immutable;
/** The index and latest.json change with every publish: always revalidate (a 304 is cheap). */
const MUTABLE = 'no-cache';

/** The file a request path names under `dir`, or undefined: only the layout's paths exist. */
export function routeFor(dir: string, path: string): Route | undefined {
  if (path === '/manifests/v2/index.json')
    return { kind: 'json', file: join(dir, 'manifests', 'v2', 'index.json'), cacheControl: MUTABLE };
  if (path === '/manifests/latest.json')
    return { kind: 'json', file: join(dir, 'manifests', 'latest.json'), cacheControl: MUTABLE };
  if (path === '/keys.json')
    return { kind: 'json', file: join(dir, 'keys.json'), cacheControl: 'public, max-age=300' };
  const node = NODE_PATH.exec(path);
  if (node !== null) {
    const hex = node[1]!;
    return {
      kind: 'json',
      file: join(dir, 'manifests', 'v2', 'nodes', 'sha256', `${hex}.json`),
      cacheControl: IMMUTABLE,
      etag: `"${hex}"`,
    };
  }
  const module = MODULE_PATH.exec(path);
  if (module !== null) {
    const hex = module[1]!;
    return { kind: 'module', file: join(dir, 'modules', 'sha256', `${hex}.wasm`), etag: `"${hex}"` };
  }
  return undefined;
}

export interface ServingHandle {
  server: Server;
  /** Base URL, e.g. http://127.0.0.1:8080 */
  url: string;
  close(): Promise<void>;
}

/** Serves `dir` read-only at `addr` (HOST:PORT; a bare port binds 127.0.0.1). */
export async function startServing(addr: string, dir: string): Promise<ServingHandle> {
  const { host, port } = parseListenAddress(addr, '--serve');
  const hashes = new ContentHashes();
  const server = createServer(
    { requestTimeout: 60_000, headersTimeout: 10_000, maxHeaderSize: 16 * 1024 },
    (req, res) => {
      handle(dir, hashes, req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
        else res.destroy();
      });
    },
  );
  // Node agents poll every interval and reconnect; idle keep-alive sockets are closed soon.
  server.keepAliveTimeout = 5_000;
  server.maxConnections = 4096;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  return {
    server,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}`,
    close: () =>
      new Promise((resolve) => {
        // Responses in flight get a moment to finish; an agent below retries anyway.
        const cut = setTimeout(() => server.closeAllConnections(), 5_000);
        server.close(() => {
          clearTimeout(cut);
          resolve();
        });
        server.closeIdleConnections();
      }),
  };
}

async function handle(dir: string, hashes: ContentHashes, req: IncomingMessage, res: ServerResponse) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  // The raw target, never normalised: "/a/../keys.json" is simply not a route.
  const path = (req.url ?? '').split('?')[0]!;
  const route = routeFor(dir, path);
  if (route === undefined) return notFound(res);
  let file: FileHandle;
  try {
    // O_NOFOLLOW: a symlink planted in the directory is not followed.
    file = await open(route.file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  } catch {
    return notFound(res);
  }
  const headOnly = req.method === 'HEAD';
  try {
    const info = await file.stat();
    if (!info.isFile()) return notFound(res);
    if (route.kind === 'json') {
      const compressed = acceptsGzip(req.headers['accept-encoding']);
      const headersFor = (etag: string): Record<string, string | number> => ({
        'content-type': 'application/json',
        'cache-control': route.cacheControl,
        // The gzip form is another representation of the same document: a weak validator.
        etag: compressed ? `W/${etag}` : etag,
        vary: 'accept-encoding',
        'x-content-type-options': 'nosniff',
      });
      // A poll that is up to date is answered without reading the file.
      const knownHex = hashes.known(route.file, info);
      const known = route.etag ?? (knownHex === undefined ? undefined : `"${knownHex}"`);
      if (known !== undefined && etagMatches(req.headers['if-none-match'], known)) {
        return void res.writeHead(304, headersFor(known)).end();
      }
      const bytes = await file.readFile();
      const etag = route.etag ?? `"${hashes.of(route.file, info, bytes)}"`;
      const headers = headersFor(etag);
      if (etagMatches(req.headers['if-none-match'], etag)) return void res.writeHead(304, headers).end();
      const body = compressed ? await hashes.gzipped(route.file, info, bytes) : bytes;
      if (compressed) headers['content-encoding'] = 'gzip';
      headers['content-length'] = body.length;
      res.writeHead(200, headers);
      res.end(headOnly ? undefined : body);
      return;
    }
    await serveModule(file, info.size, route.etag, req, res, headOnly);
  } finally {
    await file.close().catch(() => {});
  }
}

async function serveModule(
  file: FileHandle,
  size: number,
  etag: string,
  req: IncomingMessage,
  res: ServerResponse,
  headOnly: boolean,
): Promise<void> {
  const headers: Record<string, string | number> = {
    'content-type': 'application/wasm',
    'cache-control': IMMUTABLE,
    etag,
    'accept-ranges': 'bytes',
    'x-content-type-options': 'nosniff',
  };
  if (etagMatches(req.headers['if-none-match'], etag)) return void res.writeHead(304, headers).end();
  const answer = answerRange(req.headers, size, etag);
  if (answer.status === 416) return void res.writeHead(416, { ...headers, ...answer.headers }).end();
  const { range } = answer;
  res.writeHead(answer.status, { ...headers, ...answer.headers });
  if (headOnly || size === 0) return void res.end();
  const stream = file.createReadStream({
    start: range?.start ?? 0,
    end: range?.end ?? size - 1,
    autoClose: false,
  });
  try {
    await pipeline(stream, res);
  } catch {
    // The client went away; pipeline has destroyed both ends.
  }
}

function notFound(res: ServerResponse): void {
  res
    .writeHead(404, { 'content-type': 'text/plain', 'x-content-type-options': 'nosniff' })
    .end('not found\n');
}

/** sha256 of the mutable documents, recomputed only when the file changes. */
type FileIdentity = { ino: number; size: number; mtimeMs: number };

class ContentHashes {
  readonly #byFile = new Map<string, { key: string; hex: string }>();
  /** Gzip bodies by file and identity, oldest dropped past GZIP_CACHE_BYTES. */
  readonly #gzip = new Map<string, Uint8Array>();
  #gzipBytes = 0;

  /** The sha256 of the file's content when this file, unchanged, was hashed before. */
  known(file: string, info: FileIdentity): string | undefined {
    const held = this.#byFile.get(file);
    return held?.key === identity(info) ? held.hex : undefined;
  }

  of(file: string, info: FileIdentity, bytes: Uint8Array): string {
    const known = this.known(file, info);
    if (known !== undefined) return known;
    const hex = createHash('sha256').update(bytes).digest('hex');
    this.#byFile.set(file, { key: identity(info), hex });
    return hex;
  }

  /** The file's gzip body, compressed once per version of the file while it stays cached. */
  async gzipped(file: string, info: FileIdentity, bytes: Uint8Array): Promise<Uint8Array> {
    const key = `${file}\u0000${identity(info)}`;
    const cached = this.#gzip.get(key);
    if (cached !== undefined) return cached;
    const body = await gzip(bytes);
    this.#gzip.set(key, body);
    this.#gzipBytes += body.length;
    for (const [k, v] of this.#gzip) {
      if (this.#gzipBytes <= GZIP_CACHE_BYTES) break;
      this.#gzip.delete(k);
      this.#gzipBytes -= v.length;
    }
    return body;
  }
}

const identity = (info: FileIdentity) => `${info.ino}:${info.size}:${info.mtimeMs}`;
/** Gzip bodies kept for the agents of a cluster, who all ask for the same documents. */
const GZIP_CACHE_BYTES = 32 * 1024 * 1024;
