/**
 * The agent's view of the mirror's latest manifest: a conditional GET (a 304 keeps the manifest in
 * force while it is still live), capped in size and bounded in time, then verified against the
 * trusted keys, the mirror name and the last accepted version. A newly accepted version is pinned
 * in the state file before any module of it is used.
 */
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import {
  parseIsoTime,
  type TrustedKey,
  type VerifiedManifest,
  verifyManifest,
} from '../core/manifest/index.ts';
import type { Clock, Metrics } from '../core/ports.ts';
import { discard, type HttpClient, readCapped } from './http.ts';
import { AGENT_METRICS, REMOTE_FETCH_RESULTS } from './metrics.ts';
import type { AgentState, StateFile } from './state.ts';

export interface ManifestFetcherOptions {
  /** Base URL of the mirror, without a trailing slash. */
  mirrorUrl: string;
  /** The manifest's `mirror` must equal this. */
  mirrorName: string;
  trustedKeys: readonly TrustedKey[];
  maxManifestBytes: number;
  /** Allowed clock skew for issuedAt. */
  maxSkewMs: number;
  /** The whole request, body included, must finish within this. */
  manifestTimeoutMs: number;
  clock: Clock;
  http: HttpClient;
  /** Holds the last accepted version and payload hash (rollback protection across restarts). */
  state: StateFile;
  metrics: Metrics;
}

export interface FetchedManifest {
  manifest: VerifiedManifest;
  /** The mirror answered 304 to the conditional request. */
  notModified: boolean;
  /** A manifest this process had not accepted before. */
  accepted: boolean;
}

export class ManifestFetcher {
  readonly #o: ManifestFetcherOptions;
  #current: VerifiedManifest | undefined;
  #etag: string | undefined;

  constructor(options: ManifestFetcherOptions) {
    this.#o = options;
  }

  /** The manifest in force (verified), if any. */
  get current(): VerifiedManifest | undefined {
    return this.#current;
  }

  /** The latest manifest, verified and pinned; throws a WasmMirrorError and keeps the one in force otherwise. */
  async fetch(signal?: AbortSignal): Promise<FetchedManifest> {
    const state = await this.#o.state.read();
    const url = new URL(`${this.#o.mirrorUrl}/manifests/latest.json`);
    const headers: Record<string, string> = {};
    if (this.#etag !== undefined && this.#current !== undefined) headers['if-none-match'] = this.#etag;
    let bytes: Uint8Array;
    let etag: string | undefined;
    // A mirror trickling bytes never trips the idle timeout; this bounds the whole request.
    const deadline = AbortSignal.timeout(this.#o.manifestTimeoutMs);
    const requestSignal = signal ? AbortSignal.any([signal, deadline]) : deadline;
    try {
      const got = await this.#o.http.get(url, headers, requestSignal);
      if (got.status === 304 && this.#current !== undefined) {
        discard(got.res);
        // Unchanged is only good while the manifest in force is still live.
        this.#checkStillValid(this.#current);
        return { manifest: this.#current, notModified: true, accepted: false };
      }
      if (got.status !== 200) {
        discard(got.res);
        throw new WasmMirrorError(
          got.status === 404 ? 'NOT_FOUND' : 'MIRROR_UNAVAILABLE',
          `${url.href}: HTTP ${got.status}`,
          { retryable: got.status !== 404 },
        );
      }
      etag = typeof got.headers.etag === 'string' ? got.headers.etag : undefined;
      bytes = await readCapped(
        got.res,
        this.#o.maxManifestBytes,
        (n) =>
          new WasmMirrorError(
            'MANIFEST_TOO_LARGE',
            `${url.href}: manifest of at least ${n} bytes exceeds the cap of ${this.#o.maxManifestBytes}`,
          ),
      );
    } catch (err) {
      const e = deadline.aborted
        ? new WasmMirrorError(
            'TIMEOUT',
            `${url.href}: no complete answer within ${this.#o.manifestTimeoutMs} ms`,
            { cause: err, retryable: true },
          )
        : toWasmMirrorError(err);
      if (e.code === 'MANIFEST_TOO_LARGE' || e.code === 'MANIFEST_EXPIRED') this.#verificationFailed(e);
      else
        this.#o.metrics.count(AGENT_METRICS.remoteFetches, { result: REMOTE_FETCH_RESULTS.manifestFailure });
      throw e;
    }
    let verified: VerifiedManifest;
    try {
      verified = verifyManifest(bytes, {
        trustedKeys: this.#o.trustedKeys,
        mirrorName: this.#o.mirrorName,
        now: this.#o.clock.now(),
        maxBytes: this.#o.maxManifestBytes,
        maxSkewMs: this.#o.maxSkewMs,
        ...(state.accepted ? { lastAccepted: state.accepted } : {}),
      });
    } catch (err) {
      const e = toWasmMirrorError(err);
      this.#verificationFailed(e);
      throw e;
    }
    const accepted = this.#current?.payloadSha256 !== verified.payloadSha256;
    if (state.accepted?.payloadSha256 !== verified.payloadSha256) {
      // Pinned before any module of it is used, so a crash cannot reopen a rollback window.
      const next: AgentState = {
        ...state,
        accepted: { version: verified.payload.version, payloadSha256: verified.payloadSha256 },
      };
      await this.#o.state.write(next);
    }
    this.#current = verified;
    this.#etag = etag;
    this.#o.metrics.gauge(AGENT_METRICS.manifestVersion, verified.payload.version);
    return { manifest: verified, notModified: false, accepted };
  }

  #checkStillValid(m: VerifiedManifest): void {
    if (this.#o.clock.now().getTime() >= parseIsoTime(m.payload.expiresAt)!) {
      throw new WasmMirrorError(
        'MANIFEST_EXPIRED',
        `manifest version ${m.payload.version} expired at ${m.payload.expiresAt}`,
      );
    }
  }

  #verificationFailed(e: WasmMirrorError): void {
    this.#o.metrics.count(AGENT_METRICS.remoteFetches, { result: REMOTE_FETCH_RESULTS.manifestFailure });
    this.#o.metrics.count(AGENT_METRICS.verificationFailures, { code: e.code });
  }
}
