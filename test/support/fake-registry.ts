/**
 * A scripted OCI registry on node:http for what a real registry will not do (throttling, outages,
 * truncated or endless bodies, wrong digests, redirects, hostile content).
 *
 *   const fake = await startFakeRegistry();                 // 127.0.0.1:PORT, plain http
 *   const { digest } = fake.putImage('plugins/x', 'v1', { config, layers });
 *   fake.script((req, res) => { if (...) { res.writeHead(429, { 'retry-after': '1' }).end(); return true; } });
 *   fake.requests  // every request seen: method, path, headers
 *   await fake.stop();
 *
 * Content lives in memory; a script returns true when it answered the request itself, otherwise
 * the next script (and finally the registry behaviour) runs.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export type Script = (req: IncomingMessage, res: ServerResponse, fake: FakeRegistry) => boolean | undefined;

export interface BlobSpec {
  mediaType: string;
  bytes: Uint8Array;
  /** Declared size in the descriptor, when a test wants a lie. */
  size?: number;
  /** Declared digest in the descriptor, when a test wants a lie. */
  digest?: string;
  annotations?: Record<string, string>;
}

export interface FakeRegistry {
  host: string;
  url: string;
  requests: RecordedRequest[];
  /** Stores a blob; returns its real digest. */
  putBlob(bytes: Uint8Array): string;
  /** Stores manifest bytes under its digest and the given tags; returns the digest. */
  putManifest(repo: string, tags: string[], bytes: Uint8Array, mediaType: string): string;
  /** Stores config + layers as blobs and an image manifest pointing at them. */
  putImage(
    repo: string,
    tag: string,
    image: { config: BlobSpec; layers: BlobSpec[]; mediaType?: string; extra?: Record<string, unknown> },
  ): { digest: string; manifest: Uint8Array };
  /** Adds a script run before the registry behaviour (last added runs first). */
  script(fn: Script): void;
  stop(): Promise<void>;
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export function descriptor(spec: BlobSpec, digest: string): Record<string, unknown> {
  const d: Record<string, unknown> = {
    mediaType: spec.mediaType,
    digest: spec.digest ?? digest,
    size: spec.size ?? spec.bytes.length,
  };
  if (spec.annotations !== undefined) d.annotations = spec.annotations;
  return d;
}

export async function startFakeRegistry(opts: { hostname?: string } = {}): Promise<FakeRegistry> {
  const hostname = opts.hostname ?? '127.0.0.1';
  const blobs = new Map<string, Uint8Array>();
  const manifests = new Map<string, { bytes: Uint8Array; mediaType: string; digest: string }>();
  const scripts: Script[] = [];
  const requests: RecordedRequest[] = [];

  const fake: FakeRegistry = {
    host: '',
    url: '',
    requests,
    putBlob(bytes) {
      const digest = sha256Digest(bytes);
      blobs.set(digest, bytes);
      return digest;
    },
    putManifest(repo, tags, bytes, mediaType) {
      const digest = sha256Digest(bytes);
      const entry = { bytes, mediaType, digest };
      for (const ref of [digest, ...tags]) manifests.set(`${repo}@${ref}`, entry);
      return digest;
    },
    putImage(repo, tag, image) {
      const config = descriptor(image.config, fake.putBlob(image.config.bytes));
      const layers = image.layers.map((l) => descriptor(l, fake.putBlob(l.bytes)));
      const mediaType = image.mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
      const manifest = new TextEncoder().encode(
        JSON.stringify({ schemaVersion: 2, mediaType, config, layers, ...image.extra }),
      );
      return { digest: fake.putManifest(repo, [tag], manifest, mediaType), manifest };
    },
    script(fn) {
      scripts.unshift(fn);
    },
    stop: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };

  const server = createServer((req, res) => {
    const path = req.url ?? '/';
    requests.push({ method: req.method ?? 'GET', path, headers: req.headers });
    // A client may hang up early on purpose (size caps); that is not a server error.
    res.on('error', () => {});
    for (const s of scripts) if (s(req, res, fake) === true) return;
    const url = new URL(path, 'http://x');
    const send = (status: number, body: Uint8Array | string, headers: Record<string, string> = {}) => {
      const bytes = typeof body === 'string' ? Buffer.from(body) : body;
      res.writeHead(status, { 'content-length': String(bytes.length), ...headers });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    };
    const error = (status: number, code: string) =>
      send(status, JSON.stringify({ errors: [{ code, message: code.toLowerCase() }] }), {
        'content-type': 'application/json',
      });
    if (url.pathname === '/v2/' || url.pathname === '/v2') return send(200, '{}');
    const m = /^\/v2\/(.+)\/(manifests|blobs|tags)\/(.+)$/.exec(url.pathname);
    if (m === null) return error(404, 'NOT_FOUND');
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (kind === 'manifests') {
      const entry = manifests.get(`${repo}@${ref}`);
      if (entry === undefined) return error(404, 'MANIFEST_UNKNOWN');
      return send(200, entry.bytes, {
        'content-type': entry.mediaType,
        'docker-content-digest': entry.digest,
      });
    }
    if (kind === 'blobs') {
      const bytes = blobs.get(ref);
      if (bytes === undefined) return error(404, 'BLOB_UNKNOWN');
      return send(200, bytes, { 'content-type': 'application/octet-stream', 'docker-content-digest': ref });
    }
    const tags = [...manifests.keys()]
      .filter((k) => k.startsWith(`${repo}@`) && !k.startsWith(`${repo}@sha256:`))
      .map((k) => k.slice(repo.length + 1))
      .sort();
    return send(200, JSON.stringify({ name: repo, tags }), { 'content-type': 'application/json' });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, hostname, resolve);
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  fake.host = `${hostname}:${address.port}`;
  fake.url = `http://${fake.host}`;
  return fake;
}
