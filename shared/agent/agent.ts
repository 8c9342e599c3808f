/**
 * One sync of the agent: fetch and verify the mirror's signed document in force
 * (manifest-fetch.ts: the v2 index, or v1's latest.json on a mirror without v2), pin the accepted
 * version, assemble the selected entries (for v2, tree-walk.ts reads only the nodes the selection
 * needs and did not hold), then make `DIR/modules/sha256/<hex>.wasm` hold exactly those bytes
 * (module-cache.ts), publish `DIR/manifest.json` and collect what is no longer listed. An agent
 * that serves (--serve, serve.ts) also keeps the signed documents as received (served-files.ts)
 * and replaces the index it serves only once everything it lists is in place. Whatever fails,
 * the files of the last good set stay where proxies and agents below read them. The loop around
 * it is in loop.ts, the metric names in metrics.ts.
 */
import { access, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { MANIFEST_TYPE, type ManifestModule, type ManifestPayload } from '../core/domain.ts';
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import {
  canonicalizeToBytes,
  DEFAULT_MAX_MANIFEST_BYTES,
  parseIsoTime,
  type TrustedKey,
} from '../core/manifest/index.ts';
import { type Clock, type Logger, silentLogger, systemClock } from '../core/ports.ts';
import { writeFileAtomic } from '../platform/files.ts';
import { PrometheusRegistry } from '../platform/telemetry.ts';
import { getDocument } from './fetch-document.ts';
import { HttpClient } from './http.ts';
import { ManifestFetcher, type SignedDocument } from './manifest-fetch.ts';
import { AGENT_METRICS, MANIFEST_DOCUMENTS, REMOTE_FETCH_RESULTS, registerAgentMetrics } from './metrics.ts';
import { type FillObserver, ModuleCache } from './module-cache.ts';
import { moduleSelector, selectionNames } from './select.ts';
import { ServedFiles } from './served-files.ts';
import { StateFile } from './state.ts';
import { sameSet, TREE_FILE, TreeWalker } from './tree-walk.ts';

export interface AgentOptions {
  /** Base URL of the mirror (CloudFront, S3 website or the embedded server). */
  mirrorUrl: string;
  /** The manifest's `mirror` must equal this. */
  mirrorName: string;
  trustedKeys: readonly TrustedKey[];
  /** Where modules land: `<dir>/modules/sha256/<hex>.wasm`, plus `manifest.json` and the state file. */
  dir: string;
  /**
   * Module name globs to download; all listed modules when empty. On a v2 mirror they also limit
   * which parts of the manifest are read.
   */
  select?: readonly string[];
  /**
   * Keep the signed documents as received under `dir`, in the mirror's layout, for serve.ts to
   * serve (--serve). @default false
   */
  keepDocuments?: boolean;
  /** Parallel downloads. @default 8 */
  concurrency?: number;
  /** Cap on v1's latest.json (the v2 index is capped at 64 KiB, nodes by their kind). @default 16 MiB */
  maxManifestBytes?: number;
  /** Allowed clock skew for issuedAt. @default 5 min */
  maxSkewMs?: number;
  /** How long a module no longer listed is kept. @default 24 h */
  gcGraceMs?: number;
  /** A mirror silent for this long fails the manifest request. @default 30 s */
  idleTimeoutMs?: number;
  /**
   * A module download that receives nothing (no headers, or no body bytes) for this long fails
   * with TIMEOUT and frees its download slot. @default 5 s
   */
  stallTimeoutMs?: number;
  /** Each manifest document request, body included, must finish within this. @default 60 s */
  manifestTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: PrometheusRegistry;
}

export interface SyncResult {
  /** Version of the manifest (v1) or index (v2) now in force. */
  version: number;
  /** The mirror's format this sync read: `v2` (index and tree), or `v1` (a mirror without v2). */
  format: 'v1' | 'v2';
  /** The mirror answered 304 to the conditional request. */
  notModified: boolean;
  /** A manifest this process had not accepted before was accepted. */
  accepted: boolean;
  downloaded: number;
  /** Selected modules already on disk. */
  cached: number;
  removed: number;
  /** Entries the selection matched. */
  selected: number;
  /** v2 nodes (pages and bins) this sync downloaded. */
  nodesFetched: number;
  /** Bytes of manifest documents this sync received, as sent (compressed when the server compressed). */
  manifestBytes: number;
  /** HTTP requests this sync made. */
  requests: number;
}

export const STATE_FILE = 'agent-state.json';
export const MANIFEST_FILE = 'manifest.json';

/**
 * Temp files `writeFileAtomic` leaves next to the manifest and the state file when a process dies
 * between writing and renaming (`.tmp-<name>-<uuid>`).
 */
const DIR_TEMP_PREFIXES = [
  `.tmp-${MANIFEST_FILE}-`,
  `.tmp-${STATE_FILE}-`,
  `.tmp-${TREE_FILE}-`,
  '.tmp-keys.json-',
];
/** keys.json is a few keys; far below this. */
const MAX_KEYS_BYTES = 256 * 1024;

export class WasmMirrorAgent {
  readonly metrics: PrometheusRegistry;
  readonly #o: Required<Omit<AgentOptions, 'metrics' | 'select'>> & { select: readonly string[] };
  readonly #http: HttpClient;
  readonly #selected: (m: ManifestModule) => boolean;
  readonly #manifests: ManifestFetcher;
  readonly #walker: TreeWalker;
  readonly #cache: ModuleCache;
  readonly #served: ServedFiles | undefined;
  readonly #fillObserver: FillObserver;
  #manifestWritten: string | undefined;
  /** The document the served index or latest.json holds (its payload sha256). */
  #servedWritten: string | undefined;
  /** Node pins of the walk served now, and of the one before it (kept for agents still on it). */
  #servedPins = new Set<string>();
  #olderPins = new Set<string>();
  #keysEtag: string | undefined;
  #keysFresh = false;
  #manifestBytes = 0;
  #synced = false;
  /** The first sync's preparation: directories made, a previous process's leftovers swept. */
  #prepared: Promise<void> | undefined;

  constructor(options: AgentOptions) {
    this.#o = {
      concurrency: 8,
      keepDocuments: false,
      maxManifestBytes: DEFAULT_MAX_MANIFEST_BYTES,
      maxSkewMs: 5 * 60_000,
      gcGraceMs: 24 * 3600_000,
      idleTimeoutMs: 30_000,
      stallTimeoutMs: 5_000,
      manifestTimeoutMs: 60_000,
      clock: systemClock,
      logger: silentLogger,
      ...options,
      select: options.select ?? [],
      mirrorUrl: options.mirrorUrl.replace(/\/+$/, ''),
    };
    if (!Number.isInteger(this.#o.concurrency) || this.#o.concurrency < 1) {
      throw new WasmMirrorError('USAGE', 'concurrency must be a positive integer');
    }
    if (!(this.#o.stallTimeoutMs > 0)) throw new WasmMirrorError('USAGE', 'stallTimeoutMs must be positive');
    const o = this.#o;
    this.metrics = options.metrics ?? new PrometheusRegistry();
    registerAgentMetrics(this.metrics);
    this.#http = new HttpClient({ maxSockets: o.concurrency, idleTimeoutMs: o.idleTimeoutMs });
    this.#selected = moduleSelector(o.select);
    const state = new StateFile(join(o.dir, STATE_FILE));
    const onDocumentBytes = (document: string, n: number) => {
      this.#manifestBytes += n;
      this.metrics.count(AGENT_METRICS.manifestBytes, { document }, n);
    };
    this.#served = o.keepDocuments ? new ServedFiles(o.dir) : undefined;
    this.#manifests = new ManifestFetcher({
      mirrorUrl: o.mirrorUrl,
      mirrorName: o.mirrorName,
      trustedKeys: o.trustedKeys,
      maxManifestBytes: o.maxManifestBytes,
      maxSkewMs: o.maxSkewMs,
      manifestTimeoutMs: o.manifestTimeoutMs,
      clock: o.clock,
      http: this.#http,
      onDocumentBytes,
      state,
      metrics: this.metrics,
    });
    this.#walker = new TreeWalker({
      mirrorUrl: o.mirrorUrl,
      http: this.#http,
      concurrency: o.concurrency,
      timeoutMs: o.manifestTimeoutMs,
      file: join(o.dir, TREE_FILE),
      select: o.select,
      names: selectionNames(o.select),
      selected: this.#selected,
      store: this.#served,
      onDocumentBytes,
      metrics: this.metrics,
      logger: o.logger,
    });
    this.#cache = new ModuleCache({
      dir: join(o.dir, 'modules', 'sha256'),
      mirrorUrl: o.mirrorUrl,
      http: this.#http,
      state,
      gcGraceMs: o.gcGraceMs,
      stallTimeoutMs: o.stallTimeoutMs,
      logger: o.logger,
    });
    this.#fillObserver = {
      lookup: (_m, hit) => this.metrics.count(AGENT_METRICS.cacheLookups, { hit: String(hit) }),
      downloaded: () =>
        this.metrics.count(AGENT_METRICS.remoteFetches, { result: REMOTE_FETCH_RESULTS.success }),
      failed: (m, e) => {
        // Only other bytes than the listed ones are tampering; a lost connection, a stall or a
        // timeout says nothing about the bytes.
        const mismatch = e.code === 'HASH_MISMATCH' || e.code === 'LENGTH_MISMATCH';
        this.metrics.count(AGENT_METRICS.remoteFetches, {
          result: mismatch ? REMOTE_FETCH_RESULTS.checksumMismatched : REMOTE_FETCH_RESULTS.downloadFailure,
        });
        if (mismatch) this.metrics.count(AGENT_METRICS.verificationFailures, { code: e.code });
        o.logger.warn('module download failed', { name: m.name, tag: m.tag, sha256: m.sha256, code: e.code });
      },
    };
    this.metrics.addCollector(() => {
      const current = this.#manifests.current;
      const exp = current && parseIsoTime(current.verified.payload.expiresAt);
      if (exp !== undefined) {
        this.metrics.gauge(AGENT_METRICS.manifestExpiry, (exp - o.clock.now().getTime()) / 1000);
      }
    });
  }

  /** The signed document in force (verified), if any. */
  get current(): SignedDocument | undefined {
    return this.#manifests.current;
  }

  /**
   * Whether the agent has a verified set to work from: a sync succeeded in this process, or the
   * directory holds what an earlier one left (the documents it serves, or manifest.json).
   */
  async ready(): Promise<boolean> {
    if (this.#synced) return true;
    if (this.#served !== undefined) return this.#served.holdsManifest();
    return access(join(this.#o.dir, MANIFEST_FILE)).then(
      () => true,
      () => false,
    );
  }

  close(): void {
    this.#http.close();
  }

  /** One sync. Throws a WasmMirrorError on any failure; files of the last good manifest stay in place. */
  async syncOnce(signal?: AbortSignal): Promise<SyncResult> {
    const requestsBefore = this.#http.requests;
    this.#manifestBytes = 0;
    try {
      const result = await this.#sync(signal);
      result.requests = this.#http.requests - requestsBefore;
      result.manifestBytes = this.#manifestBytes;
      this.#synced = true;
      this.metrics.count(AGENT_METRICS.syncs, { result: 'success' });
      this.metrics.gauge(AGENT_METRICS.lastSuccess, Math.floor(this.#o.clock.now().getTime() / 1000));
      return result;
    } catch (err) {
      const e = toWasmMirrorError(err);
      this.metrics.count(AGENT_METRICS.syncs, { result: 'failure' });
      this.#o.logger.warn('sync failed; keeping the last good modules', { code: e.code, error: e.message });
      throw e;
    }
  }

  async #sync(signal?: AbortSignal): Promise<SyncResult> {
    // Before anything that can fail for the mirror's sake, so leftovers go even while it is down.
    this.#prepared ??= this.#prepare().catch((err: unknown) => {
      this.#prepared = undefined;
      throw err;
    });
    await this.#prepared;
    await this.#cache.ensureDir();
    const { document, notModified, accepted } = await this.#manifests.fetch(signal);
    const now = this.#o.clock.now();
    const payload = document.verified.payload;

    // The selected entries, and the module hashes that count as listed for garbage collection:
    // v1 lists everything; of a v2 tree the agent only ever holds what it selects.
    let selected: ManifestModule[];
    let listed: Set<string>;
    let nodesFetched = 0;
    let pins: Set<string> | undefined;
    if (document.format === 'v2') {
      const walk = await this.#walker.walk(document.verified, signal);
      selected = walk.modules;
      listed = new Set(selected.map((m) => m.sha256));
      nodesFetched = walk.fetched;
      pins = walk.pins;
    } else {
      selected = document.verified.payload.modules.filter(this.#selected);
      listed = new Set(document.verified.payload.modules.map((m) => m.sha256));
    }

    const wanted = new Map<string, ManifestModule>();
    for (const m of selected) wanted.set(m.sha256, m);
    const { cached, downloaded, failures } = await this.#cache.fill(
      [...wanted.values()],
      this.#o.concurrency,
      this.#fillObserver,
      signal,
    );
    if (failures.length > 0) {
      const first = failures[0]!;
      throw new WasmMirrorError(
        first.code,
        `${failures.length} of ${wanted.size} modules failed (first: ${first.message}); keeping the last good set`,
        { cause: first, retryable: first.retryable },
      );
    }

    // Every selected module is in place: publish the manifest for local tools (and the documents
    // for agents below), then collect garbage.
    const key = document.verified.payloadSha256;
    if (this.#manifestWritten !== key) {
      await writeFileAtomic(join(this.#o.dir, MANIFEST_FILE), localManifest(document, selected));
      this.#manifestWritten = key;
    }
    if (document.format === 'v2') await this.#walker.save();
    if (this.#served !== undefined) await this.#publishServed(document, pins, accepted, signal);
    const { removed, entries } = await this.#cache.collectGarbage(listed, now);
    this.metrics.gauge(AGENT_METRICS.cacheEntries, entries);
    if (removed > 0) this.#o.logger.info('removed modules no longer listed', { removed });
    if (accepted) {
      this.#o.logger.info('manifest accepted', {
        version: payload.version,
        format: document.format,
        selected: selected.length,
        nodesFetched,
        downloaded,
      });
    }
    return {
      version: payload.version,
      format: document.format,
      notModified,
      accepted,
      downloaded,
      cached,
      removed,
      selected: selected.length,
      nodesFetched,
      manifestBytes: 0,
      requests: 0,
    };
  }

  /**
   * Replaces the served index (or latest.json) now that everything it lists for this agent is on
   * disk, drops node files no recent walk pins, and refreshes keys.json when the document changed.
   */
  async #publishServed(
    document: SignedDocument,
    pins: Set<string> | undefined,
    accepted: boolean,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const served = this.#served!;
    const key = document.verified.payloadSha256;
    if (this.#servedWritten !== key) {
      if (document.format === 'v2') await served.publishIndex(document.envelope);
      else await served.publishLatest(document.envelope);
      this.#servedWritten = key;
    }
    if (pins !== undefined) {
      if (!sameSet(pins, this.#servedPins)) {
        this.#olderPins = this.#servedPins;
        this.#servedPins = pins;
      }
      await served.retainNodes(new Set([...this.#servedPins, ...this.#olderPins]));
    }
    if (accepted || !this.#keysFresh) await this.#refreshKeys(signal);
  }

  /**
   * keys.json is served as a convenience, as the mirror serves it; agents never trust it (keys
   * are pinned out of band), so failing to get it is logged, not a failed sync.
   */
  async #refreshKeys(signal: AbortSignal | undefined): Promise<void> {
    const served = this.#served!;
    const url = new URL(`${this.#o.mirrorUrl}/keys.json`);
    try {
      const got = await getDocument(this.#http, {
        url,
        etag: this.#keysEtag,
        maxBytes: MAX_KEYS_BYTES,
        timeoutMs: this.#o.manifestTimeoutMs,
        signal,
        tooLarge: (n) =>
          new WasmMirrorError('MANIFEST_TOO_LARGE', `${url.href}: over ${MAX_KEYS_BYTES} bytes (${n})`),
        onWireBytes: (n) => {
          this.#manifestBytes += n;
          this.metrics.count(AGENT_METRICS.manifestBytes, { document: MANIFEST_DOCUMENTS.keys }, n);
        },
      });
      if (got.status === 'ok') {
        await served.publishKeys(got.bytes);
        this.#keysEtag = got.etag;
      } else if (got.status === 'absent') {
        await served.removeKeys();
        this.#keysEtag = undefined;
      }
      this.#keysFresh = true;
    } catch (err) {
      this.#o.logger.warn('keys.json not refreshed', { code: toWasmMirrorError(err).code });
    }
  }

  /**
   * Makes the directories and removes what a previous process left when it was killed mid-write:
   * partial module downloads and temp copies of the manifest and state files. This process has
   * written nothing yet, so every such file is a leftover (one agent owns a directory).
   */
  async #prepare(): Promise<void> {
    await this.#cache.ensureDir();
    let removed = 0;
    for (const name of await readdir(this.#o.dir)) {
      if (DIR_TEMP_PREFIXES.some((prefix) => name.startsWith(prefix))) {
        await unlink(join(this.#o.dir, name)).then(
          () => removed++,
          () => {},
        );
      }
    }
    const { swept, entries } = await this.#cache.sweepTemps();
    this.metrics.gauge(AGENT_METRICS.cacheEntries, entries);
    if (this.#served !== undefined) {
      removed += (await this.#served.prepare()).removed;
      // The last walk of an earlier process is what it served: kept until a new walk replaces it.
      this.#servedPins = await this.#walker.heldPins();
    }
    if (removed + swept > 0) {
      this.#o.logger.info('removed temp files a previous run left behind', { files: removed + swept });
    }
  }
}

/**
 * What `DIR/manifest.json` holds: a v1 payload. From v1, the verified payload bytes as signed;
 * from v2, the index's fields with the selected entries (the agent never holds the rest), in
 * canonical JSON, so tools reading it need not know which format the mirror speaks.
 */
function localManifest(document: SignedDocument, selected: ManifestModule[]): Uint8Array {
  if (document.format === 'v1') return document.verified.payloadBytes;
  const { mirror, version, issuedAt, expiresAt } = document.verified.payload;
  const payload: ManifestPayload = {
    type: MANIFEST_TYPE,
    mirror,
    version,
    issuedAt,
    expiresAt,
    modules: selected,
  };
  return canonicalizeToBytes(payload);
}
