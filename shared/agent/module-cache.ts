/**
 * The agent's module directory, `<dir>/modules/sha256/<hex>.wasm`. A file appears there only once
 * its bytes matched the manifest's size and sha256 and were flushed to disk: downloads land in a
 * temp file that is renamed into place. A module no longer listed is removed after a grace period.
 * Temp files no download of this process owns are leftovers of a crash and are swept.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { ManifestModule } from '../core/domain.ts';
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import { parseIsoTime } from '../core/manifest/index.ts';
import type { Logger } from '../core/ports.ts';
import { closeFd, datasyncFd, fsyncDirBestEffort, openFd, writeAllFd } from '../platform/files.ts';
import { forEachLimit } from './concurrency.ts';
import { discard, type HttpClient, streamVerified } from './http.ts';
import type { AgentState, StateFile } from './state.ts';

/** Module downloads must finish within this plus one second per 64 KiB (a floor of 64 KiB/s). */
const MODULE_DEADLINE_BASE_MS = 60_000;
const MODULE_FLOOR_BYTES_PER_SECOND = 64 * 1024;
const MODULE_FILE = /^([a-f0-9]{64})\.wasm$/;
const TEMP_PREFIX = '.tmp-';
/** Verified temp files waiting for fsync + rename (each holds a file descriptor). */
const MAX_FINISHING = 64;

export interface ModuleCacheOptions {
  /** The `modules/sha256` directory. */
  dir: string;
  /** Base URL of the mirror, without a trailing slash. */
  mirrorUrl: string;
  http: HttpClient;
  /** Holds when each unlisted module was first seen unlisted. */
  state: StateFile;
  /** How long a module no longer listed is kept. */
  gcGraceMs: number;
  /** A download that receives nothing (headers or body) for this long fails with TIMEOUT. */
  stallTimeoutMs: number;
  logger: Logger;
}

/** Per-module outcomes of `fill`, for metrics and logs. */
export interface FillObserver {
  lookup?(module: ManifestModule, hit: boolean): void;
  downloaded?(module: ManifestModule): void;
  failed?(module: ManifestModule, error: WasmMirrorError): void;
}

export interface FillResult {
  /** Modules already on disk with the listed bytes. */
  cached: number;
  downloaded: number;
  failures: WasmMirrorError[];
}

export class ModuleCache {
  readonly dir: string;
  readonly #o: ModuleCacheOptions;
  /** Module files hashed by this process; later syncs only stat them. */
  readonly #verifiedOnDisk = new Set<string>();
  /** Names of the temp files of this process's downloads still in progress: never swept. */
  readonly #liveTemps = new Set<string>();
  /**
   * fdatasync blocks a libuv pool thread for a disk flush; leaving threads free keeps the
   * writes of running downloads from queueing behind flushes.
   */
  readonly #flushSlots = new Slots(Math.max(1, (Number(process.env.UV_THREADPOOL_SIZE) || 4) - 2));

  constructor(options: ModuleCacheOptions) {
    this.#o = options;
    this.dir = options.dir;
  }

  async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  /**
   * Removes temp files that no download of this process owns: a crashed or killed process leaves
   * its partial downloads behind, and nothing else would ever remove them. Returns how many it
   * removed and how many modules the directory holds.
   */
  async sweepTemps(): Promise<{ swept: number; entries: number }> {
    let swept = 0;
    let entries = 0;
    for (const name of await readdir(this.dir)) {
      if (MODULE_FILE.test(name)) entries++;
      else if (name.startsWith(TEMP_PREFIX) && !this.#liveTemps.has(name)) {
        await unlink(join(this.dir, name)).then(
          () => swept++,
          () => {},
        );
      }
    }
    return { swept, entries };
  }

  /**
   * Makes every module of `modules` present with its listed bytes, `concurrency` at a time. A module
   * that fails is reported and left out; the others still land.
   */
  async fill(
    modules: readonly ManifestModule[],
    concurrency: number,
    observer: FillObserver = {},
    signal?: AbortSignal,
  ): Promise<FillResult> {
    let downloaded = 0;
    let cached = 0;
    const failures: WasmMirrorError[] = [];
    const failed = (m: ManifestModule, err: unknown) => {
      const e = toWasmMirrorError(err);
      failures.push(e);
      observer.failed?.(m, e);
    };
    // fsync + rename run behind the downloads (bounded), so disk flushes do not idle the sockets.
    const finishing = new Set<Promise<void>>();
    const onDisk = new Set(await readdir(this.dir));
    await forEachLimit(modules, concurrency, async (m) => {
      try {
        const hit = await this.#present(m, onDisk);
        observer.lookup?.(m, hit);
        if (hit) {
          cached++;
          return;
        }
        const { finish } = await this.#download(m, signal);
        const p: Promise<void> = finish.then(
          () => {
            downloaded++;
            observer.downloaded?.(m);
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
    if (downloaded > 0) await fsyncDirBestEffort(this.dir);
    return { cached, downloaded, failures };
  }

  /**
   * Removes module files unlisted for the grace period (never a listed one) and temp files no
   * download of this process owns. Returns how many modules were removed and how many remain.
   */
  async collectGarbage(
    listed: ReadonlySet<string>,
    now: Date,
  ): Promise<{ removed: number; entries: number }> {
    const state = await this.#o.state.read();
    const unlisted = { ...state.unlistedSince };
    let changed = false;
    let removed = 0;
    let entries = 0;
    const seen = new Set<string>();
    for (const name of await readdir(this.dir)) {
      const match = MODULE_FILE.exec(name);
      const path = join(this.dir, name);
      if (match === null) {
        if (name.startsWith(TEMP_PREFIX) && !this.#liveTemps.has(name)) await unlink(path).catch(() => {});
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
      await this.#o.state.write(next);
    }
    return { removed, entries };
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
    const path = join(this.dir, name);
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
    const { stallTimeoutMs } = this.#o;
    // A stall (nothing at all for stallTimeoutMs) frees the slot quickly; a mirror trickling bytes
    // never stalls, so the whole download is bounded too, by a floor rate no working mirror falls under.
    const deadlineMs = MODULE_DEADLINE_BASE_MS + Math.ceil(m.size / MODULE_FLOOR_BYTES_PER_SECOND) * 1000;
    const deadline = AbortSignal.timeout(deadlineMs);
    const noHeaders = new AbortController();
    const requestSignal = AbortSignal.any([deadline, noHeaders.signal, ...(signal ? [signal] : [])]);
    const timedOut = (err: unknown) =>
      deadline.aborted
        ? new WasmMirrorError('TIMEOUT', `${url.href}: not downloaded within ${deadlineMs} ms`, {
            cause: err,
            retryable: true,
          })
        : noHeaders.signal.aborted
          ? new WasmMirrorError('TIMEOUT', `${url.href}: no response within ${stallTimeoutMs} ms`, {
              cause: err,
              retryable: true,
            })
          : err;
    const waitingForHeaders = setTimeout(() => noHeaders.abort(), stallTimeoutMs);
    const got = await this.#o.http
      .get(url, {}, requestSignal)
      .catch((err) => {
        throw timedOut(err);
      })
      .finally(() => clearTimeout(waitingForHeaders));
    if (got.status !== 200) {
      discard(got.res);
      throw new WasmMirrorError('MIRROR_UNAVAILABLE', `${url.href}: HTTP ${got.status}`, { retryable: true });
    }
    const final = join(this.dir, `${m.sha256}.wasm`);
    const tmpName = `${TEMP_PREFIX}${m.sha256}-${randomUUID()}`;
    const tmp = join(this.dir, tmpName);
    // Owned before the file exists, so a sweep never sees it unowned.
    this.#liveTemps.add(tmpName);
    const release = () => this.#liveTemps.delete(tmpName);
    let fd: number;
    try {
      fd = await openFd(tmp, 'wx', 0o644);
    } catch (err) {
      release();
      got.res.destroy();
      throw new WasmMirrorError('STORAGE_FAILURE', `${tmp}: ${String(err)}`, { cause: err });
    }
    const abandon = async (err: unknown): Promise<never> => {
      got.res.destroy();
      await closeFd(fd).catch(() => {});
      await unlink(tmp).catch(() => {});
      release();
      throw err;
    };
    try {
      await streamVerified(
        got.res,
        { size: m.size, sha256: m.sha256, url: url.href },
        (chunks) => writeAllFd(fd, chunks),
        { stallTimeoutMs },
      );
    } catch (err) {
      return abandon(timedOut(err));
    }
    // Verified bytes: durable first, then visible under their hash. Returned in an object, since
    // awaiting a returned promise would make the download wait for the fsync.
    const finish = (async () => {
      try {
        try {
          await this.#flushSlots.run(() => datasyncFd(fd));
        } catch (err) {
          await abandon(new WasmMirrorError('STORAGE_FAILURE', `${tmp}: ${String(err)}`, { cause: err }));
        }
        try {
          await closeFd(fd);
          await rename(tmp, final);
        } catch (err) {
          await unlink(tmp).catch(() => {});
          throw new WasmMirrorError('STORAGE_FAILURE', `${final}: ${String(err)}`, { cause: err });
        }
      } finally {
        release();
      }
      this.#verifiedOnDisk.add(m.sha256);
    })();
    return { finish };
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
