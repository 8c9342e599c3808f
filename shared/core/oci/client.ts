/**
 * A small OCI Distribution client on `fetch`, modelled on oras-go's remote repository: auth by
 * challenge (anonymous, Basic, Bearer tokens cached per host+scope), manifests read whole under a
 * cap and checked by digest, blobs streamed and checked while they stream, redirects followed by
 * hand so `Authorization` never leaves the registry's origin, and retries with backoff for
 * throttling and outages inside a bounded total time.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { SHA256_DIGEST } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import type { RegistryCredentials } from '../ports.ts';
import { type AddressGuard, defaultAddressGuard } from './address-guard.ts';
import { MANIFEST_MEDIA_TYPES } from './media-types.ts';
import { apiHost, assertTagOrDigest, isValidRepository } from './reference.ts';

/** Tags listed per repository at most (reconcile looks at far fewer). */
export const MAX_TAGS = 100_000;

export interface RepositoryTarget {
  registry: string;
  repository: string;
  /** Plain http allowed (and used) for this registry. */
  insecure: boolean;
  credentials?: RegistryCredentials;
}

export interface RetryOptions {
  /** Attempts per request, the first included (default 4). */
  maxAttempts?: number;
  /** First backoff delay; doubles each attempt, with jitter (default 500 ms). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Total time a request may spend including waits; a longer Retry-After fails at once (default 60 s). */
  budgetMs?: number;
}

export interface RegistryClientOptions {
  fetch?: typeof fetch;
  /** Time from sending a request to its response headers, redirects included (default 30 s). */
  headersTimeoutMs?: number;
  /** Longest wait for the next chunk of a body (default 30 s). */
  idleTimeoutMs?: number;
  /** Longest a single request may take, body included, so a trickling body cannot hang a pull (default 10 min). */
  requestTimeoutMs?: number;
  retry?: RetryOptions;
  /** Checks token realms and redirect targets before they are contacted (default: refuse link-local/metadata). */
  addressGuard?: AddressGuard;
  /** Cap on manifest and index bodies (default 4 MiB). */
  maxManifestBytes?: number;
  userAgent?: string;
  /** Clock in ms, for token expiry. */
  now?: () => number;
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

type What = 'manifest' | 'blob' | 'tags';

const MiB = 1024 * 1024;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const MAX_REDIRECTS = 5;
const MAX_TOKEN_RESPONSE = 1 * MiB;
const MAX_ERROR_BODY = 64 * 1024;

export class RegistryClient {
  readonly #fetch: typeof fetch;
  readonly #headersTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #retry: Required<RetryOptions>;
  readonly #guard: AddressGuard;
  readonly #maxManifestBytes: number;
  readonly #userAgent: string;
  readonly #now: () => number;
  readonly #tokens = new Map<string, { header: string; expiresAt: number }>();
  readonly #basicHosts = new Set<string>();

  constructor(options: RegistryClientOptions = {}) {
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 600_000;
    this.#retry = {
      maxAttempts: 4,
      baseDelayMs: 500,
      maxDelayMs: 10_000,
      budgetMs: 60_000,
      ...options.retry,
    };
    this.#guard = options.addressGuard ?? defaultAddressGuard;
    this.#maxManifestBytes = options.maxManifestBytes ?? 4 * MiB;
    this.#userAgent = options.userAgent ?? 'wasm-mirror/0.1';
    this.#now = options.now ?? Date.now;
  }

  /** GET a manifest or index; its digest is computed over the raw bytes and checked. */
  async getManifest(
    target: RepositoryTarget,
    reference: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<FetchedManifest> {
    assertTagOrDigest(reference);
    const { res, call } = await this.#request(
      target,
      `manifests/${reference}`,
      'GET',
      'manifest',
      options.signal,
    );
    const declared = contentLength(res);
    if (declared !== undefined && declared > this.#maxManifestBytes) {
      call.dispose();
      await discard(res);
      throw tooBigManifest(declared, this.#maxManifestBytes);
    }
    const bytes = await collect(this.#body(res, call), this.#maxManifestBytes, (n) =>
      tooBigManifest(n, this.#maxManifestBytes),
    );
    const digest = sha256Digest(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new WasmMirrorError('DIGEST_MISMATCH', `manifest ${reference} has digest ${digest}`);
    }
    const header = res.headers.get('docker-content-digest');
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
        : (res.headers.get('content-type') ?? '').split(';')[0]!.trim();
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
    const { res, call } = await this.#request(
      target,
      `manifests/${reference}`,
      'HEAD',
      'manifest',
      options.signal,
    );
    call.dispose();
    await discard(res);
    const header = res.headers.get('docker-content-digest');
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
    const { res, call } = await this.#request(target, `blobs/${digest}`, 'GET', 'blob', options.signal);
    const declared = contentLength(res);
    if (declared !== undefined && declared !== size) {
      call.dispose();
      await discard(res);
      throw new WasmMirrorError(
        'LENGTH_MISMATCH',
        `blob ${digest}: Content-Length ${declared}, descriptor says ${size}`,
      );
    }
    const hash = createHash('sha256');
    let received = 0;
    for await (const chunk of this.#body(res, call, () => `after ${received} of ${size} bytes`)) {
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
      const { res, call } = await this.#request(target, path, 'GET', 'tags', options.signal);
      const bytes = await collect(
        this.#body(res, call),
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
      path = nextPage(res.headers.get('link'), target);
    }
    return [...new Set(tags)];
  }

  // -------------------------------------------------------------------------------------------

  async #request(
    target: RepositoryTarget,
    path: string,
    method: 'GET' | 'HEAD',
    what: What,
    signal: AbortSignal | undefined,
  ): Promise<{ res: Response; call: Call }> {
    if (!isValidRepository(target.repository)) {
      throw new WasmMirrorError('INVALID_REFERENCE', `invalid repository name '${target.repository}'`);
    }
    const origin = `${target.insecure ? 'http' : 'https'}://${apiHost(target.registry)}`;
    const url = new URL(`${origin}/v2/${target.repository}/${path}`);
    const scope = `repository:${target.repository}:pull`;
    const started = this.#now();
    let authRetried = false;
    for (let attempt = 1; ; attempt++) {
      const call = new Call(signal, this.#requestTimeoutMs);
      try {
        const headers: Record<string, string> = { 'user-agent': this.#userAgent };
        if (what === 'manifest') headers.accept = MANIFEST_MEDIA_TYPES.join(', ');
        const authorization = this.#cachedAuthorization(target, scope);
        if (authorization !== undefined) headers.authorization = authorization;
        call.arm(this.#headersTimeoutMs, `${method} ${url.pathname}`);
        const res = await this.#fetchFollowingRedirects(url, method, headers, call, target);
        call.disarm();
        if (res.status === 401) {
          const challenge = res.headers.get('www-authenticate');
          await discard(res);
          call.dispose();
          if (authRetried) {
            throw new WasmMirrorError(
              'UNAUTHORIZED',
              `${target.registry} refused the credentials for ${target.repository}`,
            );
          }
          authRetried = true;
          attempt--;
          await this.#authenticate(target, scope, challenge, signal);
          continue;
        }
        if (RETRY_STATUS.has(res.status)) {
          const retryAfter = parseRetryAfter(res.headers.get('retry-after'), this.#now());
          await discard(res);
          call.dispose();
          throw new WasmMirrorError(
            res.status === 429 ? 'TOO_MANY_REQUESTS' : 'REGISTRY_UNAVAILABLE',
            `${target.registry} answered ${res.status} to ${method} ${url.pathname}`,
            { retryable: true, ...(retryAfter === undefined ? {} : { retryAfterSeconds: retryAfter }) },
          );
        }
        if (!res.ok) {
          const err = await errorFromResponse(res, what, target);
          call.dispose();
          throw err;
        }
        return { res, call };
      } catch (err) {
        call.dispose();
        const e = call.translate(err);
        if (!e.retryable || signal?.aborted) throw e;
        if (!(await this.#backoff(attempt, started, e.retryAfterSeconds, signal))) throw e;
      }
    }
  }

  async #fetchFollowingRedirects(
    start: URL,
    method: 'GET' | 'HEAD',
    headers: Record<string, string>,
    call: Call,
    target: RepositoryTarget,
  ): Promise<Response> {
    let url = start;
    let verb: string = method;
    for (let hop = 0; ; hop++) {
      const res = await this.#fetch(url, { method: verb, headers, redirect: 'manual', signal: call.signal });
      if (!REDIRECTS.has(res.status)) return res;
      const location = res.headers.get('location');
      await discard(res);
      if (hop >= MAX_REDIRECTS)
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `more than ${MAX_REDIRECTS} redirects`);
      if (location === null)
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `redirect ${res.status} without Location`);
      const next = new URL(location, url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `redirect to unsupported scheme ${next.protocol}`);
      }
      if (next.protocol === 'http:' && !target.insecure) {
        throw new WasmMirrorError(
          'INSECURE_NOT_ALLOWED',
          `redirect to plain http (${next.host}) for a TLS registry`,
        );
      }
      // Credentials are for the registry only: a CDN or storage host must not see them.
      if (next.origin !== start.origin) delete headers.authorization;
      await this.#guard(next);
      if (res.status === 303) verb = 'GET';
      url = next;
    }
  }

  #cachedAuthorization(target: RepositoryTarget, scope: string): string | undefined {
    const host = apiHost(target.registry);
    if (this.#basicHosts.has(host) && target.credentials !== undefined) return basic(target.credentials);
    const cached = this.#tokens.get(tokenKey(host, scope, target.credentials));
    if (cached !== undefined && cached.expiresAt > this.#now()) return cached.header;
    return undefined;
  }

  async #authenticate(
    target: RepositoryTarget,
    scope: string,
    header: string | null,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const host = apiHost(target.registry);
    const challenge = header === null ? undefined : parseChallenge(header);
    if (challenge?.scheme === 'basic') {
      if (target.credentials === undefined) {
        throw new WasmMirrorError('UNAUTHORIZED', `${target.registry} requires credentials (Basic)`);
      }
      this.#basicHosts.add(host);
      return;
    }
    if (challenge?.scheme !== 'bearer' || challenge.params.realm === undefined) {
      throw new WasmMirrorError('UNAUTHORIZED', `${target.registry} answered 401 without a usable challenge`);
    }
    const key = tokenKey(host, scope, target.credentials);
    this.#tokens.delete(key);
    let realm: URL;
    try {
      realm = new URL(challenge.params.realm);
    } catch (err) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', `invalid token realm '${challenge.params.realm}'`, {
        cause: err,
      });
    }
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && target.insecure)) {
      throw new WasmMirrorError('INSECURE_NOT_ALLOWED', `token realm ${realm.origin} is not https`);
    }
    await this.#guard(realm);
    if (challenge.params.service !== undefined) realm.searchParams.set('service', challenge.params.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = { 'user-agent': this.#userAgent, accept: 'application/json' };
    if (target.credentials !== undefined) headers.authorization = basic(target.credentials);
    const call = new Call(signal, this.#requestTimeoutMs);
    let res: Response;
    try {
      call.arm(this.#headersTimeoutMs, 'token request');
      res = await this.#fetch(realm, { headers, redirect: 'manual', signal: call.signal });
      call.disarm();
    } catch (err) {
      call.dispose();
      throw call.translate(err);
    }
    if (res.status === 401 || res.status === 403) {
      call.dispose();
      await discard(res);
      throw new WasmMirrorError('UNAUTHORIZED', `token server ${realm.host} refused the credentials`);
    }
    if (!res.ok) {
      call.dispose();
      await discard(res);
      if (res.status < 500 && res.status !== 429) {
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `token server ${realm.host} answered ${res.status}`);
      }
      throw new WasmMirrorError('REGISTRY_UNAVAILABLE', `token server ${realm.host} answered ${res.status}`, {
        retryable: true,
      });
    }
    const bytes = await collect(
      this.#body(res, call),
      MAX_TOKEN_RESPONSE,
      () => new WasmMirrorError('REGISTRY_PROTOCOL', 'token response is too large'),
    );
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch (err) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', 'token response is not JSON', { cause: err });
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', 'token response has neither token nor access_token');
    }
    // The spec's minimum lifetime is 60 s; refresh a little early so a token never expires in flight.
    const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    this.#tokens.set(key, {
      header: `Bearer ${token}`,
      expiresAt: this.#now() + Math.max(1, lifetime - 10) * 1000,
    });
  }

  async #backoff(
    attempt: number,
    started: number,
    retryAfterSeconds: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    if (attempt >= this.#retry.maxAttempts) return false;
    const exp = Math.min(this.#retry.maxDelayMs, this.#retry.baseDelayMs * 2 ** (attempt - 1));
    const delay =
      retryAfterSeconds !== undefined ? retryAfterSeconds * 1000 : exp / 2 + Math.random() * (exp / 2);
    if (this.#now() + delay - started > this.#retry.budgetMs) return false;
    await sleep(delay, undefined, signal === undefined ? undefined : { signal }).catch(() => {});
    return signal?.aborted !== true;
  }

  async *#body(res: Response, call: Call, where?: () => string): AsyncGenerator<Uint8Array, void, undefined> {
    if (res.body === null) {
      call.dispose();
      return;
    }
    const reader = res.body.getReader();
    let done = false;
    try {
      for (;;) {
        call.arm(this.#idleTimeoutMs, 'reading the response body');
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          const e = call.translate(err);
          if (where !== undefined && e.code === 'REGISTRY_UNAVAILABLE') {
            throw new WasmMirrorError(e.code, `${e.message} ${where()}`, { cause: err, retryable: true });
          }
          throw e;
        }
        call.disarm();
        if (next.done) {
          done = true;
          return;
        }
        yield next.value;
      }
    } finally {
      call.dispose();
      if (!done) await reader.cancel().catch(() => {});
    }
  }
}

/** One attempt's abort controller: the caller's signal, plus a timer for headers or idle body. */
class Call {
  readonly #controller = new AbortController();
  readonly #outer: AbortSignal | undefined;
  readonly #onAbort = () => this.#controller.abort(this.#outer?.reason);
  #timer: ReturnType<typeof setTimeout> | undefined;

  readonly #deadline: ReturnType<typeof setTimeout>;

  constructor(outer: AbortSignal | undefined, totalMs: number) {
    this.#outer = outer;
    if (outer?.aborted) this.#controller.abort(outer.reason);
    else outer?.addEventListener('abort', this.#onAbort, { once: true });
    this.#deadline = setTimeout(
      () =>
        this.#controller.abort(
          new WasmMirrorError('TIMEOUT', `request took longer than ${totalMs} ms`, { retryable: true }),
        ),
      totalMs,
    );
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  arm(ms: number, what: string): void {
    this.disarm();
    this.#timer = setTimeout(
      () =>
        this.#controller.abort(
          new WasmMirrorError('TIMEOUT', `${what} timed out after ${ms} ms`, { retryable: true }),
        ),
      ms,
    );
  }

  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  dispose(): void {
    this.disarm();
    clearTimeout(this.#deadline);
    this.#outer?.removeEventListener('abort', this.#onAbort);
  }

  /** Maps whatever fetch or a body read threw into the error the caller sees. */
  translate(err: unknown): WasmMirrorError {
    if (err instanceof WasmMirrorError) return err;
    if (this.#controller.signal.aborted) {
      const reason: unknown = this.#controller.signal.reason;
      if (reason instanceof WasmMirrorError) return reason;
      return new WasmMirrorError('TIMEOUT', 'operation aborted', { cause: reason });
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const detail = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
    return new WasmMirrorError('REGISTRY_UNAVAILABLE', `connection failed (${detail})`, {
      cause: err,
      retryable: true,
    });
  }
}

function tooBigManifest(size: number, max: number): WasmMirrorError {
  return new WasmMirrorError(
    'SIZE_EXCEEDED',
    `manifest is ${size > max ? `over ${max}` : size} bytes, over the ${max}-byte cap`,
  );
}

async function collect(
  chunks: AsyncIterable<Uint8Array>,
  max: number,
  tooBig: (size: number) => WasmMirrorError,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.length;
    if (size > max) throw tooBig(size);
    parts.push(chunk);
  }
  return Buffer.concat(parts, size);
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

function contentLength(res: Response): number | undefined {
  const value = res.headers.get('content-length');
  if (value === null || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

function basic(c: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

function tokenKey(host: string, scope: string, credentials: RegistryCredentials | undefined): string {
  return `${host}|${scope}|${credentials?.username ?? ''}`;
}

/** Parses the first challenge of a WWW-Authenticate header: scheme and auth-params. */
export function parseChallenge(
  header: string,
): { scheme: string; params: Record<string, string> } | undefined {
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header);
  if (m === null) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/gy;
  const rest = m[2] ?? '';
  re.lastIndex = 0;
  for (let p = re.exec(rest); p !== null && p[0] !== ''; p = re.exec(rest)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

/** Retry-After as seconds (delta-seconds or an HTTP date), or undefined. */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return undefined;
  return Math.max(0, Math.ceil((when - nowMs) / 1000));
}

async function errorFromResponse(
  res: Response,
  what: What,
  target: RepositoryTarget,
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
