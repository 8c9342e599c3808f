/**
 * One sync of the agent: fetch and verify the mirror's latest manifest (manifest-fetch.ts), pin the
 * accepted version, then make `DIR/modules/sha256/<hex>.wasm` hold exactly the listed bytes
 * (module-cache.ts), publish `DIR/manifest.json` and collect what is no longer listed. Whatever
 * fails, the files of the last good manifest stay where proxies read them. The loop around it is
 * in loop.ts, the metric names in metrics.ts.
 */
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManifestModule } from '../core/domain.ts';
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import {
  DEFAULT_MAX_MANIFEST_BYTES,
  parseIsoTime,
  type TrustedKey,
  type VerifiedManifest,
} from '../core/manifest/index.ts';
import { type Clock, type Logger, silentLogger, systemClock } from '../core/ports.ts';
import { writeFileAtomic } from '../platform/files.ts';
import { PrometheusRegistry } from '../platform/telemetry.ts';
import { HttpClient } from './http.ts';
import { ManifestFetcher } from './manifest-fetch.ts';
import { AGENT_METRICS, REMOTE_FETCH_RESULTS, registerAgentMetrics } from './metrics.ts';
import { type FillObserver, ModuleCache } from './module-cache.ts';
import { moduleSelector } from './select.ts';
import { StateFile } from './state.ts';

export interface AgentOptions {
  /** Base URL of the mirror (CloudFront, S3 website or the embedded server). */
  mirrorUrl: string;
  /** The manifest's `mirror` must equal this. */
  mirrorName: string;
  trustedKeys: readonly TrustedKey[];
  /** Where modules land: `<dir>/modules/sha256/<hex>.wasm`, plus `manifest.json` and the state file. */
  dir: string;
  /** Module name globs to download; all listed modules when empty. */
  select?: readonly string[];
  /** Parallel downloads. @default 8 */
  concurrency?: number;
  /** @default 16 MiB */
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
  /** The whole manifest request, body included, must finish within this. @default 60 s */
  manifestTimeoutMs?: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: PrometheusRegistry;
}

export interface SyncResult {
  /** Version of the manifest now in force. */
  version: number;
  /** The mirror answered 304 to the conditional request. */
  notModified: boolean;
  /** A manifest this process had not accepted before was accepted. */
  accepted: boolean;
  downloaded: number;
  /** Selected modules already on disk. */
  cached: number;
  removed: number;
  /** HTTP requests this sync made. */
  requests: number;
}

export const STATE_FILE = 'agent-state.json';
export const MANIFEST_FILE = 'manifest.json';

/**
 * Temp files `writeFileAtomic` leaves next to the manifest and the state file when a process dies
 * between writing and renaming (`.tmp-<name>-<uuid>`).
 */
const DIR_TEMP_PREFIXES = [`.tmp-${MANIFEST_FILE}-`, `.tmp-${STATE_FILE}-`];

export class WasmMirrorAgent {
  readonly metrics: PrometheusRegistry;
  readonly #o: Required<Omit<AgentOptions, 'metrics' | 'select'>> & { select: readonly string[] };
  readonly #http: HttpClient;
  readonly #selected: (m: ManifestModule) => boolean;
  readonly #manifests: ManifestFetcher;
  readonly #cache: ModuleCache;
  readonly #fillObserver: FillObserver;
  #manifestWritten: string | undefined;
  /** The first sync's preparation: directories made, a previous process's leftovers swept. */
  #prepared: Promise<void> | undefined;

  constructor(options: AgentOptions) {
    this.#o = {
      concurrency: 8,
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
    this.#manifests = new ManifestFetcher({
      mirrorUrl: o.mirrorUrl,
      mirrorName: o.mirrorName,
      trustedKeys: o.trustedKeys,
      maxManifestBytes: o.maxManifestBytes,
      maxSkewMs: o.maxSkewMs,
      manifestTimeoutMs: o.manifestTimeoutMs,
      clock: o.clock,
      http: this.#http,
      state,
      metrics: this.metrics,
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
      const exp = current && parseIsoTime(current.payload.expiresAt);
      if (exp !== undefined) {
        this.metrics.gauge(AGENT_METRICS.manifestExpiry, (exp - o.clock.now().getTime()) / 1000);
      }
    });
  }

  /** The manifest in force (verified), if any. */
  get current(): VerifiedManifest | undefined {
    return this.#manifests.current;
  }

  close(): void {
    this.#http.close();
  }

  /** One sync. Throws a WasmMirrorError on any failure; files of the last good manifest stay in place. */
  async syncOnce(signal?: AbortSignal): Promise<SyncResult> {
    const requestsBefore = this.#http.requests;
    try {
      const result = await this.#sync(signal);
      result.requests = this.#http.requests - requestsBefore;
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
    const { manifest, notModified, accepted } = await this.#manifests.fetch(signal);
    const now = this.#o.clock.now();
    const payload = manifest.payload;

    const wanted = new Map<string, ManifestModule>();
    for (const m of payload.modules) if (this.#selected(m)) wanted.set(m.sha256, m);
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

    // Every selected module is in place: publish the manifest for local tools, then collect garbage.
    if (this.#manifestWritten !== manifest.payloadSha256) {
      await writeFileAtomic(join(this.#o.dir, MANIFEST_FILE), manifest.payloadBytes);
      this.#manifestWritten = manifest.payloadSha256;
    }
    const { removed, entries } = await this.#cache.collectGarbage(
      new Set(payload.modules.map((m) => m.sha256)),
      now,
    );
    this.metrics.gauge(AGENT_METRICS.cacheEntries, entries);
    if (removed > 0) this.#o.logger.info('removed modules no longer listed', { removed });
    if (accepted) {
      this.#o.logger.info('manifest accepted', {
        version: payload.version,
        modules: payload.modules.length,
        downloaded,
      });
    }
    return { version: payload.version, notModified, accepted, downloaded, cached, removed, requests: 0 };
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
    if (removed + swept > 0) {
      this.#o.logger.info('removed temp files a previous run left behind', { files: removed + swept });
    }
  }
}
