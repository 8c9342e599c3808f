/**
 * The agent's view of the mirror's signed document in force: the v2 index
 * (`manifests/v2/index.json`), or, on a mirror that has none yet, v1's `manifests/latest.json`.
 * Each is one conditional GET (a 304 keeps the document in force while it is still live), asking
 * for gzip or br, capped by its decoded size and bounded in time, then verified against the
 * trusted keys, the mirror name and the last accepted version. A newly accepted version is
 * pinned in the state file before anything it lists is used.
 *
 * v1 is a fallback for one release, for mirrors not yet publishing v2. An agent that has
 * accepted a v2 index never goes back to v1: a mirror (or someone in front of it) hiding the
 * index must not reopen the older format's window. Index versions continue v1's sequence, so
 * the first index must not be older than the last v1 manifest accepted.
 */
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import {
  type IndexPayload,
  MAX_INDEX_BYTES,
  parseIsoTime,
  type SignedPayload,
  type TrustedKey,
  type VerifiedDocument,
  type VerifiedManifest,
  v2Keys,
  verifyIndex,
  verifyManifest,
} from '../core/manifest/index.ts';
import type { Clock, Metrics } from '../core/ports.ts';
import { type DocumentResponse, getDocument } from './fetch-document.ts';
import type { HttpClient } from './http.ts';
import { AGENT_METRICS, MANIFEST_DOCUMENTS, REMOTE_FETCH_RESULTS } from './metrics.ts';
import type { AgentState, StateFile } from './state.ts';

export interface ManifestFetcherOptions {
  /** Base URL of the mirror, without a trailing slash. */
  mirrorUrl: string;
  /** The document's `mirror` must equal this. */
  mirrorName: string;
  trustedKeys: readonly TrustedKey[];
  /** Cap on v1's latest.json (the v2 index is capped at 64 KiB). */
  maxManifestBytes: number;
  /** Allowed clock skew for issuedAt. */
  maxSkewMs: number;
  /** Each request, body included, must finish within this. */
  manifestTimeoutMs: number;
  clock: Clock;
  http: HttpClient;
  /** Told the bytes received for each document, as they arrive. */
  onDocumentBytes: (document: string, n: number) => void;
  /** Holds the last accepted versions and payload hashes (rollback protection across restarts). */
  state: StateFile;
  metrics: Metrics;
}

/** A verified signed document with the envelope bytes as received (decoded, as the mirror stores them). */
export type SignedDocument =
  | { format: 'v2'; verified: VerifiedDocument<IndexPayload>; envelope: Uint8Array }
  | { format: 'v1'; verified: VerifiedManifest; envelope: Uint8Array };

export interface FetchedManifest {
  document: SignedDocument;
  /** The mirror answered 304 to the conditional request. */
  notModified: boolean;
  /** A document this process had not accepted before. */
  accepted: boolean;
}

/** Errors that say the mirror served something it must not have, rather than that it was unreachable. */
const REFUSED_CODES = new Set(['MANIFEST_TOO_LARGE', 'MANIFEST_EXPIRED', 'DECOMPRESSION_BOMB']);

export class ManifestFetcher {
  readonly #o: ManifestFetcherOptions;
  #current: SignedDocument | undefined;
  #etag: string | undefined;

  constructor(options: ManifestFetcherOptions) {
    this.#o = options;
  }

  /** The document in force (verified), if any. */
  get current(): SignedDocument | undefined {
    return this.#current;
  }

  /** The latest signed document, verified and pinned; throws a WasmMirrorError and keeps the one in force otherwise. */
  async fetch(signal?: AbortSignal): Promise<FetchedManifest> {
    const state = await this.#o.state.read();
    try {
      return await this.#fetch(state, signal);
    } catch (err) {
      const e = toWasmMirrorError(err);
      this.#o.metrics.count(AGENT_METRICS.remoteFetches, { result: REMOTE_FETCH_RESULTS.manifestFailure });
      if (refusals.has(e) || REFUSED_CODES.has(e.code)) {
        this.#o.metrics.count(AGENT_METRICS.verificationFailures, { code: e.code });
      }
      throw e;
    }
  }

  async #fetch(state: AgentState, signal?: AbortSignal): Promise<FetchedManifest> {
    const index = await this.#get(
      v2Keys.index,
      MAX_INDEX_BYTES,
      MANIFEST_DOCUMENTS.index,
      this.#current?.format === 'v2' ? this.#etag : undefined,
      signal,
    );
    if (index.status === 'not-modified') return this.#unchanged();
    if (index.status === 'absent') {
      if (state.index !== undefined) {
        throw new WasmMirrorError(
          'NOT_FOUND',
          `${this.#o.mirrorUrl}/${v2Keys.index}: HTTP ${index.http}; this agent accepted index version ${state.index.version} and does not fall back to manifest v1`,
          { retryable: true },
        );
      }
      return this.#fetchV1(state, signal);
    }
    const verified = verifying(() => {
      const doc = verifyIndex(index.bytes, {
        ...this.#verifyOptions(),
        ...(state.index ? { lastAccepted: state.index } : {}),
      });
      // The first index continues v1's version sequence: it may repeat the last v1 version
      // (the same publish in both formats) but not go below it.
      if (state.index === undefined && state.accepted && doc.payload.version < state.accepted.version) {
        throw new WasmMirrorError(
          'ROLLBACK',
          `index version ${doc.payload.version} is older than the accepted manifest version ${state.accepted.version}`,
        );
      }
      return doc;
    });
    if (state.index?.payloadSha256 !== verified.payloadSha256) {
      // Pinned before anything it lists is used, so a crash cannot reopen a rollback window.
      const { payload, payloadSha256 } = verified;
      await this.#o.state.write({ ...state, index: { version: payload.version, payloadSha256 } });
    }
    return this.#accept({ format: 'v2', verified, envelope: index.bytes }, index.etag);
  }

  async #fetchV1(state: AgentState, signal?: AbortSignal): Promise<FetchedManifest> {
    const path = 'manifests/latest.json';
    const got = await this.#get(
      path,
      this.#o.maxManifestBytes,
      MANIFEST_DOCUMENTS.manifest,
      this.#current?.format === 'v1' ? this.#etag : undefined,
      signal,
    );
    if (got.status === 'not-modified') return this.#unchanged();
    if (got.status === 'absent') {
      throw new WasmMirrorError(
        got.http === 403 ? 'MIRROR_UNAVAILABLE' : 'NOT_FOUND',
        `${this.#o.mirrorUrl}/${path}: HTTP ${got.http} (and no v2 index)`,
        { retryable: got.http === 403 },
      );
    }
    const verified = verifying(() =>
      verifyManifest(got.bytes, {
        ...this.#verifyOptions(),
        maxBytes: this.#o.maxManifestBytes,
        ...(state.accepted ? { lastAccepted: state.accepted } : {}),
      }),
    );
    if (state.accepted?.payloadSha256 !== verified.payloadSha256) {
      await this.#o.state.write({
        ...state,
        accepted: { version: verified.payload.version, payloadSha256: verified.payloadSha256 },
      });
    }
    return this.#accept({ format: 'v1', verified, envelope: got.bytes }, got.etag);
  }

  #accept(document: SignedDocument, etag: string | undefined): FetchedManifest {
    const accepted = this.#current?.verified.payloadSha256 !== document.verified.payloadSha256;
    this.#current = document;
    this.#etag = etag;
    this.#o.metrics.gauge(AGENT_METRICS.manifestVersion, document.verified.payload.version);
    return { document, notModified: false, accepted };
  }

  #unchanged(): FetchedManifest {
    const current = this.#current!;
    // Unchanged is only good while the document in force is still live.
    checkStillValid(current.verified.payload, this.#o.clock.now());
    return { document: current, notModified: true, accepted: false };
  }

  #verifyOptions() {
    return {
      trustedKeys: this.#o.trustedKeys,
      mirrorName: this.#o.mirrorName,
      now: this.#o.clock.now(),
      maxSkewMs: this.#o.maxSkewMs,
    };
  }

  #get(
    path: string,
    maxBytes: number,
    document: string,
    etag: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<DocumentResponse> {
    const url = new URL(`${this.#o.mirrorUrl}/${path}`);
    return getDocument(this.#o.http, {
      url,
      etag,
      maxBytes,
      timeoutMs: this.#o.manifestTimeoutMs,
      signal,
      tooLarge: (n) =>
        new WasmMirrorError(
          'MANIFEST_TOO_LARGE',
          `${url.href}: at least ${n} bytes exceeds the cap of ${maxBytes}`,
        ),
      onWireBytes: (n) => this.#o.onDocumentBytes(document, n),
    });
  }
}

function checkStillValid(payload: SignedPayload, now: Date): void {
  if (now.getTime() >= parseIsoTime(payload.expiresAt)!) {
    throw new WasmMirrorError(
      'MANIFEST_EXPIRED',
      `version ${payload.version} expired at ${payload.expiresAt}`,
    );
  }
}

/** Errors thrown by a verification: refusals, counted by code, rather than outages. */
const refusals = new WeakSet<WasmMirrorError>();

function verifying<T>(verify: () => T): T {
  try {
    return verify();
  } catch (err) {
    if (err instanceof WasmMirrorError) refusals.add(err);
    throw err;
  }
}
