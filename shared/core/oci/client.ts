/**
 * A small OCI Distribution client, modelled on oras-go's remote repository: manifests read whole
 * under a cap and checked by digest, blobs streamed and checked while they stream, tags listed
 * page by page, tags resolved to digests. Authentication lives in auth.ts, the HTTP rules
 * (redirects, timeouts, retries) in transport.ts.
 */
import { createHash } from 'node:crypto';
import { SHA256_DIGEST } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { readCapped } from '../io.ts';
import type { RegistryCredentials } from '../ports.ts';
import { RegistryAuth } from './auth.ts';
import { MANIFEST_MEDIA_TYPES } from './media-types.ts';
import { apiHost, assertTagOrDigest, isValidRepository } from './reference.ts';
import {
  contentLength,
  type Exchange,
  release,
  retryableStatusError,
  Transport,
  type TransportOptions,
} from './transport.ts';

export type { RetryOptions } from './transport.ts';

/** Tags listed per repository at most (reconcile looks at far fewer). */
export const MAX_TAGS = 100_000;

export interface RepositoryTarget {
  registry: string;
  repository: string;
  /** Plain http allowed (and used) for this registry. */
  insecure: boolean;
  credentials?: RegistryCredentials;
}

export interface RegistryClientOptions extends TransportOptions {
  /** Cap on manifest and index bodies (default 4 MiB). */
  maxManifestBytes?: number;
}

export interface FetchedManifest {
  /** sha256 over the raw bytes as received. */
  digest: string;
  mediaType: string;
  bytes: Uint8Array;
  json: Record<string, unknown>;
}

export interface BlobOptions {
  signal?: AbortSignal;
  /** SIZE_EXCEEDED before any download when the descriptor declares more. */
  maxBytes?: number;
  onProgress?: (received: number, total: number) => void;
}

export type What = 'manifest' | 'blob' | 'tags';

const MAX_ERROR_BODY = 64 * 1024;

export class RegistryClient {
  readonly #transport: Transport;
  readonly #auth: RegistryAuth;
  readonly #maxManifestBytes: number;

  constructor(options: RegistryClientOptions = {}) {
    this.#transport = new Transport(options);
    this.#auth = new RegistryAuth(this.#transport);
    this.#maxManifestBytes = options.maxManifestBytes ?? 4 * 1024 * 1024;
  }

  /** GET a manifest or index; its digest is computed over the raw bytes and checked. */
  async getManifest(
    target: RepositoryTarget,
    reference: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<FetchedManifest> {
    assertTagOrDigest(reference);
    const ex = await this.#request(target, `manifests/${reference}`, 'GET', 'manifest', options.signal);
    const declared = contentLength(ex.res);
    if (declared !== undefined && declared > this.#maxManifestBytes) {
      await release(ex);
      throw tooBigManifest(declared, this.#maxManifestBytes);
    }
    const bytes = await readCapped(this.#transport.body(ex), this.#maxManifestBytes, (n) =>
      tooBigManifest(n, this.#maxManifestBytes),
    );
    const digest = sha256Digest(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new WasmMirrorError('DIGEST_MISMATCH', `manifest ${reference} has digest ${digest}`);
    }
    const header = ex.res.headers.get('docker-content-digest');
    if (header?.startsWith('sha256:') && header !== digest) {
      throw new WasmMirrorError(
        'DIGEST_MISMATCH',
        `manifest digest ${digest} differs from Docker-Content-Digest ${header}`,
      );
    }
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
    } catch (err) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', 'manifest is not valid JSON', { cause: err });
    }
    if (json === null || typeof json !== 'object' || Array.isArray(json)) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', 'manifest is not a JSON object');
    }
    const obj = json as Record<string, unknown>;
    const mediaType =
      typeof obj.mediaType === 'string'
        ? obj.mediaType
        : (ex.res.headers.get('content-type') ?? '').split(';')[0]!.trim();
    if (!(MANIFEST_MEDIA_TYPES as readonly string[]).includes(mediaType) || obj.schemaVersion !== 2) {
      throw new WasmMirrorError(
        'UNSUPPORTED_MEDIA_TYPE',
        `unsupported manifest media type '${mediaType || 'none'}' (schemaVersion ${String(obj.schemaVersion)})`,
      );
    }
    return { digest, mediaType, bytes, json: obj };
  }

  /** The digest a tag points to: HEAD and Docker-Content-Digest, falling back to GET and hashing. */
  async resolveDigest(
    target: RepositoryTarget,
    reference: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<string> {
    assertTagOrDigest(reference);
    const ex = await this.#request(target, `manifests/${reference}`, 'HEAD', 'manifest', options.signal);
    await release(ex);
    const header = ex.res.headers.get('docker-content-digest');
    if (header !== null && SHA256_DIGEST.test(header)) {
      if (reference.startsWith('sha256:') && header !== reference) {
        throw new WasmMirrorError('DIGEST_MISMATCH', `registry answered ${header} for ${reference}`);
      }
      return header;
    }
    return (await this.getManifest(target, reference, options)).digest;
  }

  /**
   * The blob's bytes as they arrive, each chunk counted and hashed before it is handed on; the
   * iterator throws LENGTH_MISMATCH / DIGEST_MISMATCH instead of completing when they are wrong,
   * so a consumer must treat what it wrote as unverified until the iteration ends.
   */
  async *blob(
    target: RepositoryTarget,
    descriptor: { digest: string; size: number },
    options: BlobOptions = {},
  ): AsyncGenerator<Uint8Array, void, undefined> {
    const { digest, size } = descriptor;
    if (!SHA256_DIGEST.test(digest)) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', `unsupported or malformed blob digest '${digest}'`);
    }
    if (!Number.isSafeInteger(size) || size < 0) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', `invalid blob size ${String(size)}`);
    }
    if (options.maxBytes !== undefined && size > options.maxBytes) {
      throw new WasmMirrorError(
        'SIZE_EXCEEDED',
        `blob ${digest} is ${size} bytes, over the ${options.maxBytes}-byte cap`,
      );
    }
    const ex = await this.#request(target, `blobs/${digest}`, 'GET', 'blob', options.signal);
    const declared = contentLength(ex.res);
    if (declared !== undefined && declared !== size) {
      await release(ex);
      throw new WasmMirrorError(
        'LENGTH_MISMATCH',
        `blob ${digest}: Content-Length ${declared}, descriptor says ${size}`,
      );
    }
    const hash = createHash('sha256');
    let received = 0;
    for await (const chunk of this.#transport.body(ex, () => `after ${received} of ${size} bytes`)) {
      received += chunk.length;
      if (received > size) {
        throw new WasmMirrorError(
          'LENGTH_MISMATCH',
          `blob ${digest} is longer than its descriptor's ${size} bytes`,
        );
      }
      hash.update(chunk);
      options.onProgress?.(received, size);
      yield chunk;
    }
    if (received !== size) {
      throw new WasmMirrorError('LENGTH_MISMATCH', `blob ${digest} ended after ${received} of ${size} bytes`);
    }
    const actual = `sha256:${hash.digest('hex')}`;
    if (actual !== digest)
      throw new WasmMirrorError('DIGEST_MISMATCH', `blob ${digest} has digest ${actual}`);
  }

  /** Every tag of a repository (at most MAX_TAGS), following `Link: <…>; rel="next"` pagination. */
  async listTags(target: RepositoryTarget, options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const tags: string[] = [];
    let path: string | undefined = 'tags/list?n=1000';
    for (let page = 0; path !== undefined; page++) {
      if (page >= 1000) throw new WasmMirrorError('REGISTRY_PROTOCOL', 'too many pages of tags');
      const ex = await this.#request(target, path, 'GET', 'tags', options.signal);
      const bytes = await readCapped(
        this.#transport.body(ex),
        this.#maxManifestBytes,
        () => new WasmMirrorError('SIZE_EXCEEDED', 'tag list page is too large'),
      );
      let body: { tags?: unknown };
      try {
        body = JSON.parse(Buffer.from(bytes).toString('utf8')) as { tags?: unknown };
      } catch (err) {
        throw new WasmMirrorError('REGISTRY_PROTOCOL', 'tag list is not valid JSON', { cause: err });
      }
      if (Array.isArray(body.tags)) for (const t of body.tags) if (typeof t === 'string') tags.push(t);
      // A hostile registry could page forever with big pages: stop at a total, not only per page.
      if (tags.length > MAX_TAGS) throw new WasmMirrorError('SIZE_EXCEEDED', `more than ${MAX_TAGS} tags`);
      path = nextPage(ex.res.headers.get('link'), target);
    }
    return [...new Set(tags)];
  }

  /**
   * One registry API request, retried by the transport. A 401 is answered once per request (its
   * challenge taught us a token or Basic credentials) without counting as an attempt.
   */
  async #request(
    target: RepositoryTarget,
    path: string,
    method: 'GET' | 'HEAD',
    what: What,
    signal: AbortSignal | undefined,
  ): Promise<Exchange> {
    if (!isValidRepository(target.repository)) {
      throw new WasmMirrorError('INVALID_REFERENCE', `invalid repository name '${target.repository}'`);
    }
    const origin = `${target.insecure ? 'http' : 'https'}://${apiHost(target.registry)}`;
    const url = new URL(`${origin}/v2/${target.repository}/${path}`);
    const scope = `repository:${target.repository}:pull`;
    const label = `${method} ${url.pathname}`;
    let authRetried = false;
    return this.#transport.retrying(signal, async () => {
      for (;;) {
        const headers: Record<string, string> = {};
        if (what === 'manifest') headers.accept = MANIFEST_MEDIA_TYPES.join(', ');
        const authorization = this.#auth.authorization(target, scope);
        if (authorization !== undefined) headers.authorization = authorization;
        const ex = await this.#transport.send(url, {
          method,
          headers,
          signal,
          label,
          redirects: { insecure: target.insecure },
        });
        const { res } = ex;
        if (res.status === 401) {
          const challenge = res.headers.get('www-authenticate');
          await release(ex);
          if (authRetried) {
            throw new WasmMirrorError(
              'UNAUTHORIZED',
              `${target.registry} refused the credentials for ${target.repository}`,
            );
          }
          authRetried = true;
          await this.#auth.authenticate(target, scope, challenge, signal);
          continue;
        }
        const retryable = retryableStatusError(
          res,
          `${target.registry} answered ${res.status} to ${label}`,
          this.#transport.now(),
        );
        if (retryable !== undefined) {
          await release(ex);
          throw retryable;
        }
        if (!res.ok) {
          const reference = path.startsWith('manifests/') ? path.slice('manifests/'.length) : undefined;
          const err = await errorFromResponse(res, what, target, reference);
          ex.call.dispose();
          throw err;
        }
        return ex;
      }
    });
  }
}

function tooBigManifest(size: number, max: number): WasmMirrorError {
  return new WasmMirrorError(
    'SIZE_EXCEEDED',
    `manifest is ${size > max ? `over ${max}` : size} bytes, over the ${max}-byte cap`,
  );
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/**
 * Maps a failed response (the registry's JSON error body when there is one) to an error code.
 * `reference` (the tag or digest asked for) is named in the message: a missing tag is the
 * commonest 404, and the repository alone does not say which one was missing.
 */
export async function errorFromResponse(
  res: Response,
  what: What,
  target: RepositoryTarget,
  reference?: string,
): Promise<WasmMirrorError> {
  let code: string | undefined;
  let message: string | undefined;
  try {
    const reader = res.body?.getReader();
    const parts: Uint8Array[] = [];
    let size = 0;
    while (reader !== undefined && size < MAX_ERROR_BODY) {
      const next = await reader.read();
      if (next.done) break;
      parts.push(next.value);
      size += next.value.length;
    }
    await reader?.cancel().catch(() => {});
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
      errors?: { code?: string; message?: string }[];
    };
    code = body.errors?.[0]?.code;
    message = body.errors?.[0]?.message;
  } catch {
    // Not a registry error body; the status alone decides.
  }
  const where = `${target.registry}/${target.repository}`;
  const detail = `${res.status}${code === undefined ? '' : ` ${code}`}${message === undefined ? '' : `: ${message}`}`;
  if (res.status === 404) {
    if (what === 'manifest' && reference !== undefined) {
      const digest = reference.startsWith('sha256:');
      const ref = `${where}${digest ? '@' : ':'}${reference}`;
      if (code === 'NAME_UNKNOWN')
        return new WasmMirrorError('NAME_UNKNOWN', `${ref}: repository not found (${detail})`);
      return new WasmMirrorError(
        'MANIFEST_UNKNOWN',
        digest
          ? `${ref}: no manifest with this digest (${detail})`
          : `${ref}: tag ${reference} not found in ${where} (${detail})`,
      );
    }
    if (code === 'NAME_UNKNOWN')
      return new WasmMirrorError('NAME_UNKNOWN', `${where}: repository not found (${detail})`);
    if (what === 'blob') return new WasmMirrorError('BLOB_UNKNOWN', `${where}: blob not found (${detail})`);
    if (what === 'tags')
      return new WasmMirrorError('NAME_UNKNOWN', `${where}: repository not found (${detail})`);
    return new WasmMirrorError('MANIFEST_UNKNOWN', `${where}: manifest not found (${detail})`);
  }
  if (res.status === 403) return new WasmMirrorError('DENIED', `${where}: access denied (${detail})`);
  return new WasmMirrorError('REGISTRY_PROTOCOL', `${where}: unexpected response ${detail}`);
}

function nextPage(link: string | null, target: RepositoryTarget): string | undefined {
  if (link === null) return undefined;
  const m = /<([^>]+)>\s*;\s*rel="?next"?/i.exec(link);
  if (m?.[1] === undefined) return undefined;
  const url = new URL(m[1], `http://${apiHost(target.registry)}`);
  const prefix = `/v2/${target.repository}/`;
  if (!url.pathname.startsWith(prefix) || url.host !== apiHost(target.registry)) {
    throw new WasmMirrorError('REGISTRY_PROTOCOL', `tag list pagination leaves the repository: ${m[1]}`);
  }
  return `${url.pathname.slice(prefix.length)}${url.search}`;
}
