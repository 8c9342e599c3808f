/**
 * The agent's sync engine: fetch the mirror's latest manifest (conditionally), verify it, pin the
 * accepted version, then make `DIR/modules/sha256/<hex>.wasm` hold exactly the listed bytes.
 * Whatever fails, the files of the last good manifest stay where proxies read them.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManifestModule } from '../core/domain.ts';
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import {
  DEFAULT_MAX_MANIFEST_BYTES,
  parseIsoTime,
  type TrustedKey,
  type VerifiedManifest,
  verifyManifest,
} from '../core/manifest/index.ts';
import { type Clock, type Logger, silentLogger, systemClock } from '../core/ports.ts';
import {
  closeFd,
  datasyncFd,
  fsyncDirBestEffort,
  openFd,
  writeAllFd,
  writeFileAtomic,
} from '../platform/files.ts';
import { PrometheusRegistry } from '../platform/telemetry.ts';
import { discard, HttpClient, readCapped, streamVerified } from './http.ts';
import { moduleSelector } from './select.ts';
import { type AgentState, readState, writeState } from './state.ts';

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
  /** A mirror silent for this long fails the request. @default 30 s */
  idleTimeoutMs?: number;
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
/** Module downloads must finish within this plus one second per 64 KiB (a floor of 64 KiB/s). */
const MODULE_DEADLINE_BASE_MS = 60_000;
const MODULE_FLOOR_BYTES_PER_SECOND = 64 * 1024;
export const MANIFEST_FILE = 'manifest.json';
const MODULE_FILE = /^([a-f0-9]{64})\.wasm$/;
const STALE_TEMP_MS = 3600_000;
/** Verified temp files waiting for fsync + rename (each holds a file descriptor). */
const MAX_FINISHING = 64;

/** The agent's metrics. Istio's agent names are used where they mean the same thing, so existing dashboards keep working. */
const METRIC_HELP: Record<string, string> = {
  wasm_cache_entries: 'Modules in the local cache directory.',
  wasm_cache_lookup_count: 'Module lookups in the local cache, by hit.',
  wasm_remote_fetch_count: 'Remote fetches of manifests and modules, by result.',
  wasm_mirror_manifest_version: 'Version of the accepted manifest.',
  wasm_mirror_manifest_expiry_seconds: 'Seconds until the accepted manifest expires.',
  wasm_mirror_verification_failures_total: 'Manifest or module verification failures, by code.',
  wasm_mirror_sync_total: 'Sync attempts, by result.',
  wasm_mirror_last_success_timestamp_seconds: 'Unix time of the last successful sync.',
};

export class WasmMirrorAgent {
  readonly metrics: PrometheusRegistry;
  readonly #o: Required<Omit<AgentOptions, 'metrics' | 'select'>> & { select: readonly string[] };
  readonly #http: HttpClient;
  readonly #selected: (m: ManifestModule) => boolean;
  readonly #modulesDir: string;
  readonly #statePath: string;
  #state: AgentState | undefined;
  #current: VerifiedManifest | undefined;
  #etag: string | undefined;
  /** Module files hashed by this process; later syncs only stat them. */
  readonly #verifiedOnDisk = new Set<string>();
  #manifestWritten: string | undefined;
  /**
   * fdatasync blocks a libuv pool thread for a disk flush; leaving threads free keeps the
   * writes of running downloads from queueing behind flushes.
   */
  readonly #flushSlots = new Slots(Math.max(1, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 2));

  constructor(options: AgentOptions) {
    this.#o = {
      concurrency: 8,
      maxManifestBytes: DEFAULT_MAX_MANIFEST_BYTES,
      maxSkewMs: 5 * 60_000,
      gcGraceMs: 24 * 3600_000,
      idleTimeoutMs: 30_000,
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
    this.metrics = options.metrics ?? new PrometheusRegistry();
    for (const [name, help] of Object.entries(METRIC_HELP)) this.metrics.describe(name, help);
    this.#http = new HttpClient({ maxSockets: this.#o.concurrency, idleTimeoutMs: this.#o.idleTimeoutMs });
    this.#selected = moduleSelector(this.#o.select);
    this.#modulesDir = join(this.#o.dir, 'modules', 'sha256');
    this.#statePath = join(this.#o.dir, STATE_FILE);
    this.metrics.addCollector(() => {
      const exp = this.#current && parseIsoTime(this.#current.payload.expiresAt);
      if (exp !== undefined) {
        this.metrics.gauge(
          'wasm_mirror_manifest_expiry_seconds',
          (exp - this.#o.clock.now().getTime()) / 1000,
        );
      }
    });
  }

  /** The manifest in force (verified), if any. */
  get current(): VerifiedManifest | undefined {
    return this.#current;
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
      this.metrics.count('wasm_mirror_sync_total', { result: 'success' });
      this.metrics.gauge(
        'wasm_mirror_last_success_timestamp_seconds',
        Math.floor(this.#o.clock.now().getTime() / 1000),
      );
      return result;
    } catch (err) {
      const e = toWasmMirrorError(err);
      this.metrics.count('wasm_mirror_sync_total', { result: 'failure' });
      this.#o.logger.warn('sync failed; keeping the last good modules', { code: e.code, error: e.message });
      throw e;
    }
  }

  async #sync(signal?: AbortSignal): Promise<SyncResult> {
    await mkdir(this.#modulesDir, { recursive: true });
    this.#state ??= await readState(this.#statePath);
    const state = this.#state;
    const { manifest, notModified, accepted } = await this.#fetchManifest(state, signal);
    const now = this.#o.clock.now();
    const payload = manifest.payload;

    const wanted = new Map<string, ManifestModule>();
    for (const m of payload.modules) if (this.#selected(m)) wanted.set(m.sha256, m);
    let downloaded = 0;
    let cached = 0;
    const failures: WasmMirrorError[] = [];
    const failed = (m: ManifestModule, err: unknown) => {
      const e = toWasmMirrorError(err);
      const mismatch = e.code === 'HASH_MISMATCH' || e.code === 'LENGTH_MISMATCH';
      this.metrics.count('wasm_remote_fetch_count', {
        result: mismatch ? 'checksum_mismatched' : 'download_failure',
      });
      if (mismatch) this.metrics.count('wasm_mirror_verification_failures_total', { code: e.code });
      this.#o.logger.warn('module download failed', {
        name: m.name,
        tag: m.tag,
        sha256: m.sha256,
        code: e.code,
      });
      failures.push(e);
    };
    // fsync + rename run behind the downloads (bounded), so disk flushes do not idle the sockets.
    const finishing = new Set<Promise<void>>();
    const onDisk = new Set(await readdir(this.#modulesDir));
    await forEachLimit([...wanted.values()], this.#o.concurrency, async (m) => {
      try {
        if (await this.#present(m, onDisk)) {
          cached++;
          this.metrics.count('wasm_cache_lookup_count', { hit: 'true' });
          return;
        }
        this.metrics.count('wasm_cache_lookup_count', { hit: 'false' });
        const { finish } = await this.#download(m, signal);
        const p: Promise<void> = finish.then(
          () => {
            downloaded++;
            this.metrics.count('wasm_remote_fetch_count', { result: 'success' });
          },
          (err) => failed(m, err),
        );
        finishing.add(p);
        void p.then(() => finishing.delete(p));
        while (finishing.size >= MAX_FINISHING) await Promise.race(finishing);
      } catch (err) {
        failed(m, err);
      }
    });
    await Promise.all(finishing);
    if (downloaded > 0) await fsyncDirBestEffort(this.#modulesDir);
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
    const removed = await this.#collectGarbage(new Set(payload.modules.map((m) => m.sha256)), now);
    if (accepted) {
      this.#o.logger.info('manifest accepted', {
        version: payload.version,
        modules: payload.modules.length,
        downloaded,
      });
    }
    return { version: payload.version, notModified, accepted, downloaded, cached, removed, requests: 0 };
  }

  async #fetchManifest(state: AgentState, signal?: AbortSignal) {
    const url = new URL(`${this.#o.mirrorUrl}/manifests/latest.json`);
    const headers: Record<string, string> = {};
    if (this.#etag !== undefined && this.#current !== undefined) headers['if-none-match'] = this.#etag;
    let bytes: Uint8Array;
    let etag: string | undefined;
    // A mirror trickling bytes never trips the idle timeout; this bounds the whole request.
    const deadline = AbortSignal.timeout(this.#o.manifestTimeoutMs);
    const requestSignal = signal ? AbortSignal.any([signal, deadline]) : deadline;
    try {
      const got = await this.#http.get(url, headers, requestSignal);
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
            {
              cause: err,
              retryable: true,
            },
          )
        : toWasmMirrorError(err);
      if (e.code === 'MANIFEST_TOO_LARGE' || e.code === 'MANIFEST_EXPIRED') this.#verificationFailed(e);
      else this.metrics.count('wasm_remote_fetch_count', { result: 'fetch_failure' });
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
      await writeState(this.#statePath, next);
      this.#state = next;
    }
    this.#current = verified;
    this.#etag = etag;
    this.metrics.gauge('wasm_mirror_manifest_version', verified.payload.version);
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
    this.metrics.count('wasm_remote_fetch_count', { result: 'manifest_failure' });
    this.metrics.count('wasm_mirror_verification_failures_total', { code: e.code });
  }

  /**
   * True if the module file is on disk with the listed bytes. Files are hashed once per process;
   * after that the directory listing is enough, since only this agent writes there.
   */
  async #present(m: ManifestModule, onDisk: Set<string>): Promise<boolean> {
    const name = `${m.sha256}.wasm`;
    if (!onDisk.has(name)) {
      this.#verifiedOnDisk.delete(m.sha256);
      return false;
    }
    if (this.#verifiedOnDisk.has(m.sha256)) return true;
    const path = join(this.#modulesDir, name);
    const info = await stat(path).catch(() => undefined);
    if (info?.isFile() && info.size === m.size && (await hashFile(path)) === m.sha256) {
      this.#verifiedOnDisk.add(m.sha256);
      return true;
    }
    // Not the listed bytes (damaged or tampered with): replace it.
    this.#o.logger.warn('cached module does not match its hash; downloading it again', { sha256: m.sha256 });
    await unlink(path).catch(() => {});
    return false;
  }

  /** Downloads and verifies into a temp file; `finish` then fsyncs and renames it into place. */
  async #download(m: ManifestModule, signal?: AbortSignal): Promise<{ finish: Promise<void> }> {
    const url = new URL(`${this.#o.mirrorUrl}/modules/sha256/${m.sha256}.wasm`);
    // A mirror trickling bytes never trips the idle timeout: bound the whole download too, by a
    // floor rate no working mirror falls under.
    const deadlineMs = MODULE_DEADLINE_BASE_MS + Math.ceil(m.size / MODULE_FLOOR_BYTES_PER_SECOND) * 1000;
    const deadline = AbortSignal.timeout(deadlineMs);
    const requestSignal = signal ? AbortSignal.any([signal, deadline]) : deadline;
    const timedOut = (err: unknown) =>
      deadline.aborted
        ? new WasmMirrorError('TIMEOUT', `${url.href}: not downloaded within ${deadlineMs} ms`, {
            cause: err,
            retryable: true,
          })
        : err;
    const got = await this.#http.get(url, {}, requestSignal).catch((err) => {
      throw timedOut(err);
    });
    if (got.status !== 200) {
      discard(got.res);
      throw new WasmMirrorError('MIRROR_UNAVAILABLE', `${url.href}: HTTP ${got.status}`, { retryable: true });
    }
    const final = join(this.#modulesDir, `${m.sha256}.wasm`);
    const tmp = join(this.#modulesDir, `.tmp-${m.sha256}-${randomUUID()}`);
    let fd: number;
    try {
      fd = await openFd(tmp, 'wx', 0o644);
    } catch (err) {
      got.res.destroy();
      throw new WasmMirrorError('STORAGE_FAILURE', `${tmp}: ${String(err)}`, { cause: err });
    }
    const abandon = async (err: unknown): Promise<never> => {
      got.res.destroy();
      await closeFd(fd).catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    };
    try {
      await streamVerified(got.res, { size: m.size, sha256: m.sha256, url: url.href }, (chunks) =>
        writeAllFd(fd, chunks),
      );
    } catch (err) {
      return abandon(timedOut(err));
    }
    // Verified bytes: durable first, then visible under their hash. Returned in an object, since
    // awaiting a returned promise would make the download wait for the fsync.
    const finish = (async () => {
      try {
        await this.#flushSlots.run(() => datasyncFd(fd));
      } catch (err) {
        await abandon(new WasmMirrorError('STORAGE_FAILURE', `${tmp}: ${String(err)}`, { cause: err }));
      }
      await closeFd(fd);
      try {
        await rename(tmp, final);
      } catch (err) {
        await unlink(tmp).catch(() => {});
        throw new WasmMirrorError('STORAGE_FAILURE', `${final}: ${String(err)}`, { cause: err });
      }
      this.#verifiedOnDisk.add(m.sha256);
    })();
    return { finish };
  }

  async #collectGarbage(listed: Set<string>, now: Date): Promise<number> {
    const state = this.#state!;
    const unlisted = { ...state.unlistedSince };
    let changed = false;
    let removed = 0;
    let entries = 0;
    const seen = new Set<string>();
    for (const name of await readdir(this.#modulesDir)) {
      const match = MODULE_FILE.exec(name);
      const path = join(this.#modulesDir, name);
      if (match === null) {
        // Temp files of a crashed run; in-flight ones of this process are younger than any sync.
        if (name.startsWith('.tmp-')) {
          const info = await stat(path).catch(() => undefined);
          if (info && now.getTime() - info.mtimeMs > STALE_TEMP_MS) await unlink(path).catch(() => {});
        }
        continue;
      }
      const hex = match[1]!;
      seen.add(hex);
      entries++;
      if (listed.has(hex)) continue;
      const since = unlisted[hex];
      if (since === undefined) {
        unlisted[hex] = now.toISOString();
        changed = true;
      } else if (now.getTime() - parseIsoTime(since)! >= this.#o.gcGraceMs) {
        await unlink(path).catch(() => {});
        this.#verifiedOnDisk.delete(hex);
        delete unlisted[hex];
        changed = true;
        removed++;
        entries--;
      }
    }
    for (const hex of Object.keys(unlisted)) {
      if (!seen.has(hex) || listed.has(hex)) {
        delete unlisted[hex];
        changed = true;
      }
    }
    if (changed) {
      const next: AgentState = { ...state, unlistedSince: unlisted };
      await writeState(this.#statePath, next);
      this.#state = next;
    }
    this.metrics.gauge('wasm_cache_entries', entries);
    if (removed > 0) this.#o.logger.info('removed modules no longer listed', { removed });
    return removed;
  }
}

/** A counting semaphore. */
class Slots {
  #free: number;
  readonly #waiting: (() => void)[] = [];
  constructor(count: number) {
    this.#free = count;
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

async function forEachLimit<T>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export interface LoopOptions {
  intervalMs: number;
  signal: AbortSignal;
  /** Fraction of the delay added or removed at random, so a fleet does not poll in step. @default 0.1 */
  jitter?: number;
  /** Longest wait after repeated failures. @default max(interval, 5 min) */
  maxBackoffMs?: number;
  random?: () => number;
  onResult?: (result: SyncResult | WasmMirrorError) => void;
}

/** Syncs every interval (with jitter) until aborted; failures back off exponentially from 1 s. */
export async function runAgentLoop(agent: WasmMirrorAgent, options: LoopOptions): Promise<void> {
  const jitter = options.jitter ?? 0.1;
  const maxBackoff = options.maxBackoffMs ?? Math.max(options.intervalMs, 300_000);
  const random = options.random ?? Math.random;
  let failures = 0;
  while (!options.signal.aborted) {
    try {
      options.onResult?.(await agent.syncOnce(options.signal));
      failures = 0;
    } catch (err) {
      if (options.signal.aborted) break;
      failures++;
      options.onResult?.(toWasmMirrorError(err));
    }
    const base =
      failures === 0 ? options.intervalMs : Math.min(maxBackoff, 1000 * 2 ** Math.min(failures - 1, 20));
    await sleep(base * (1 + jitter * (2 * random() - 1)), options.signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
