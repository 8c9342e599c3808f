/**
 * The push side of the OCI Distribution client: each blob is looked for first (HEAD) and, when
 * missing, uploaded monolithically (POST for an upload session, then PUT of the whole blob to
 * its Location with `?digest=`); the manifest is PUT last, under its own media type, so the tag
 * never points at missing content. Authentication is auth.ts's challenge flow with a
 * `pull,push` scope; timeouts and retries are transport.ts's, each retry starting the step over
 * (an upload session does not survive a failed PUT everywhere).
 */
import { SHA256_DIGEST } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { RegistryAuth } from './auth.ts';
import { errorFromResponse, type RepositoryTarget, sha256Digest, type What } from './client.ts';
import type { Descriptor } from './media-types.ts';
import { apiHost, assertTagOrDigest, isValidRepository } from './reference.ts';
import {
  type Exchange,
  release,
  retryableStatusError,
  Transport,
  type TransportOptions,
} from './transport.ts';

export interface PushBlob {
  descriptor: Descriptor;
  bytes: Uint8Array<ArrayBuffer>;
}

export interface PushArtifact {
  manifest: { mediaType: string; bytes: Uint8Array<ArrayBuffer> };
  /** Every blob the manifest references (config and layers). */
  blobs: PushBlob[];
}

export interface PushResult {
  /** The manifest's digest, as the registry stores it. */
  digest: string;
  mediaType: string;
  /** The manifest's size in bytes. */
  size: number;
  /** Blobs sent, and blobs the registry already had. */
  uploaded: number;
  existing: number;
}

interface Request {
  method: 'HEAD' | 'POST' | 'PUT';
  headers?: Record<string, string>;
  body?: Uint8Array<ArrayBuffer>;
  label: string;
}

export class RegistryPusher {
  readonly #transport: Transport;
  readonly #auth: RegistryAuth;

  constructor(options: TransportOptions = {}) {
    this.#transport = new Transport(options);
    this.#auth = new RegistryAuth(this.#transport);
  }

  /** Pushes every blob the registry lacks, then the manifest under `reference` (a tag or its digest). */
  async push(
    target: RepositoryTarget,
    reference: string,
    artifact: PushArtifact,
    options: { signal?: AbortSignal } = {},
  ): Promise<PushResult> {
    // Every blob is checked before the first request, so a bad artifact leaves nothing behind.
    for (const blob of artifact.blobs) checkBlob(blob);
    let uploaded = 0;
    let existing = 0;
    for (const blob of artifact.blobs) {
      if (await this.#sendBlob(target, blob, options.signal)) uploaded++;
      else existing++;
    }
    const digest = await this.putManifest(target, reference, artifact.manifest, options);
    return {
      digest,
      mediaType: artifact.manifest.mediaType,
      size: artifact.manifest.bytes.length,
      uploaded,
      existing,
    };
  }

  /** Uploads a blob unless the repository has it already; true when it was sent. */
  async pushBlob(
    target: RepositoryTarget,
    blob: PushBlob,
    options: { signal?: AbortSignal } = {},
  ): Promise<boolean> {
    return this.#sendBlob(target, checkBlob(blob), options.signal);
  }

  /** PUTs a manifest; returns its digest, computed over the bytes sent and checked against the answer. */
  async putManifest(
    target: RepositoryTarget,
    reference: string,
    manifest: { mediaType: string; bytes: Uint8Array<ArrayBuffer> },
    options: { signal?: AbortSignal } = {},
  ): Promise<string> {
    assertTagOrDigest(reference);
    const digest = sha256Digest(manifest.bytes);
    if (reference.startsWith('sha256:') && reference !== digest) {
      throw new WasmMirrorError('DIGEST_MISMATCH', `manifest has digest ${digest}, not ${reference}`);
    }
    const url = apiUrl(target, `manifests/${reference}`);
    const request: Request = {
      method: 'PUT',
      headers: { 'content-type': manifest.mediaType },
      body: manifest.bytes,
      label: `PUT ${url.pathname}`,
    };
    await this.#transport.retrying(options.signal, async () => {
      const ex = await this.#exchange(target, url, request, options.signal);
      await expectSuccess(ex, 'manifest', target);
      checkDigestHeader(ex.res, digest, 'manifest');
    });
    return digest;
  }

  async #sendBlob(
    target: RepositoryTarget,
    blob: PushBlob,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    return this.#transport.retrying(signal, async () => {
      if (await this.#blobExists(target, blob.descriptor.digest, signal)) return false;
      await this.#upload(target, blob, signal);
      return true;
    });
  }

  async #blobExists(target: RepositoryTarget, digest: string, signal: AbortSignal | undefined) {
    const url = apiUrl(target, `blobs/${digest}`);
    const ex = await this.#exchange(target, url, { method: 'HEAD', label: `HEAD ${url.pathname}` }, signal);
    if (ex.res.status === 404) {
      await release(ex);
      return false;
    }
    await expectSuccess(ex, 'blob', target);
    return true;
  }

  async #upload(target: RepositoryTarget, blob: PushBlob, signal: AbortSignal | undefined): Promise<void> {
    const { digest } = blob.descriptor;
    const start = apiUrl(target, 'blobs/uploads/');
    const session = await this.#exchange(
      target,
      start,
      { method: 'POST', label: `POST ${start.pathname}` },
      signal,
    );
    const location = session.res.headers.get('location');
    await expectSuccess(session, 'blob', target);
    if (location === null || location === '') {
      throw new WasmMirrorError(
        'REGISTRY_PROTOCOL',
        `${target.registry} started an upload without a Location`,
      );
    }
    const url = await this.#uploadUrl(target, location, start);
    // Appended by hand: re-encoding the query could alter the registry's opaque session state.
    url.search = `${url.search === '' ? '?' : `${url.search}&`}digest=${encodeURIComponent(digest)}`;
    const ex = await this.#exchange(
      target,
      url,
      {
        method: 'PUT',
        headers: { 'content-type': 'application/octet-stream' },
        body: blob.bytes,
        label: `PUT ${url.pathname}`,
      },
      signal,
    );
    await expectSuccess(ex, 'blob', target);
    checkDigestHeader(ex.res, digest, 'blob');
  }

  /** The upload session's URL: relative Locations resolve against the request, others are checked. */
  async #uploadUrl(target: RepositoryTarget, location: string, base: URL): Promise<URL> {
    let url: URL;
    try {
      url = new URL(location, base);
    } catch (err) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', `invalid upload Location '${location}'`, { cause: err });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      throw new WasmMirrorError(
        'REGISTRY_PROTOCOL',
        `upload Location with unsupported scheme ${url.protocol}`,
      );
    }
    if (url.protocol === 'http:' && !target.insecure) {
      throw new WasmMirrorError(
        'INSECURE_NOT_ALLOWED',
        `upload Location is plain http (${url.host}) for a TLS registry`,
      );
    }
    if (url.host !== base.host) await this.#transport.guard(url);
    return url;
  }

  /**
   * One request: a 401 from the registry is answered once with its challenge (push scope), a
   * throttled or failing answer becomes a retryable error, anything else is the caller's to judge.
   * Credentials go only to the registry's own host, never to another host a Location names.
   */
  async #exchange(
    target: RepositoryTarget,
    url: URL,
    request: Request,
    signal: AbortSignal | undefined,
  ): Promise<Exchange> {
    const host = apiHost(target.registry);
    const ownHost = url.host === host;
    const scope = `repository:${target.repository}:pull,push`;
    for (let answered = false; ; answered = true) {
      const headers: Record<string, string> = { ...request.headers };
      const authorization = ownHost ? this.#auth.authorization(target, scope) : undefined;
      if (authorization !== undefined) headers.authorization = authorization;
      let ex: Exchange;
      try {
        ex = await this.#transport.send(url, {
          method: request.method,
          headers,
          ...(request.body === undefined ? {} : { body: request.body }),
          signal,
          label: request.label,
          ...(request.method === 'HEAD' ? { redirects: { insecure: target.insecure } } : {}),
        });
      } catch (err) {
        throw explainConnectionFailure(err, url.host);
      }
      const { res } = ex;
      if (res.status === 401 && ownHost) {
        const challenge = res.headers.get('www-authenticate');
        await release(ex);
        if (answered) {
          throw new WasmMirrorError(
            'UNAUTHORIZED',
            target.credentials === undefined
              ? `${target.registry} requires credentials to push to ${target.repository}`
              : `${target.registry} refused the credentials for pushing to ${target.repository}`,
          );
        }
        await this.#auth.authenticate(target, scope, challenge, signal);
        continue;
      }
      const retryable = retryableStatusError(
        res,
        `${target.registry} answered ${res.status} to ${request.label}`,
        this.#transport.now(),
      );
      if (retryable !== undefined) {
        await release(ex);
        throw retryable;
      }
      return ex;
    }
  }
}

function checkBlob(blob: PushBlob): PushBlob {
  const { digest, size } = blob.descriptor;
  if (!SHA256_DIGEST.test(digest)) {
    throw new WasmMirrorError('INVALID_REFERENCE', `unsupported or malformed blob digest '${digest}'`);
  }
  if (sha256Digest(blob.bytes) !== digest || blob.bytes.length !== size) {
    throw new WasmMirrorError('DIGEST_MISMATCH', `blob ${digest} (${size} bytes) holds other bytes`);
  }
  return blob;
}

function apiUrl(target: RepositoryTarget, path: string): URL {
  if (!isValidRepository(target.repository)) {
    throw new WasmMirrorError('INVALID_REFERENCE', `invalid repository name '${target.repository}'`);
  }
  const scheme = target.insecure ? 'http' : 'https';
  return new URL(`${scheme}://${apiHost(target.registry)}/v2/${target.repository}/${path}`);
}

/** Ends a successful exchange; a failed one becomes the registry's error. */
async function expectSuccess(ex: Exchange, what: What, target: RepositoryTarget): Promise<void> {
  if (ex.res.ok) {
    await release(ex);
    return;
  }
  const err =
    ex.res.status >= 300 && ex.res.status < 400
      ? new WasmMirrorError(
          'REGISTRY_PROTOCOL',
          `${target.registry} answered ${ex.res.status} (a redirect) where a push expects an answer`,
        )
      : await errorFromResponse(ex.res, what, target);
  await release(ex);
  throw err;
}

function checkDigestHeader(res: Response, digest: string, what: What): void {
  const header = res.headers.get('docker-content-digest');
  if (header?.startsWith('sha256:') && header !== digest) {
    throw new WasmMirrorError('DIGEST_MISMATCH', `registry stored the ${what} as ${header}, not ${digest}`);
  }
}

/**
 * Connection failures, named by host: a TLS request answered in plain http is not retried (it
 * will not change) and says so, since the fix is to allow plain http for that registry.
 */
function explainConnectionFailure(err: unknown, host: string): unknown {
  if (!(err instanceof WasmMirrorError) || err.code !== 'REGISTRY_UNAVAILABLE') return err;
  const code = causeCode(err);
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(causeMessages(err))) {
    return new WasmMirrorError('INSECURE_NOT_ALLOWED', `${host} answers plain http, not TLS`, { cause: err });
  }
  const what = code === 'ECONNREFUSED' ? 'connection refused' : err.message;
  return new WasmMirrorError('REGISTRY_UNAVAILABLE', `cannot connect to ${host}: ${what}`, {
    cause: err,
    retryable: err.retryable,
  });
}

/** The first `code` string along an error's cause chain (fetch wraps the socket error). */
function causeCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && !(e instanceof WasmMirrorError)) return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function causeMessages(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; depth++) {
    if (e instanceof Error) parts.push(e.message);
    e = (e as { cause?: unknown }).cause;
  }
  return parts.join(' | ');
}
