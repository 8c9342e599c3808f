/**
 * Crash leftovers in a data directory: the temp files a process killed mid-operation leaves
 * behind. Staged pulls (`tmp/pull-*`, `tmp/.pull-*.tmp`), the object store's temp files
 * (`.wm-tmp-*`), atomic-write temps (`.tmp-*`), the signing key's and the lock's files written
 * aside. Nothing else is ever removed, and the queues keep their own temp files.
 *
 * A leftover is removed only when no live operation can own it:
 * - it has not changed for `graceMs`: another process sharing the directory (a `wasm-mirror
 *   mirror` run) writes its files continuously and finishes them well within that;
 * - it is older than the oldest operation this process has running (its files are all newer);
 * - this process does not hold it open (where /proc/self/fd tells).
 */
import type { Dirent } from 'node:fs';
import { readdir, readlink, realpath, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TEMP_PREFIX } from '../platform/files.ts';

/** Directories under the data directory that are not swept (the queues recover their own). */
const NOT_SWEPT = new Set(['queues']);
const SCRATCH_DIR = 'tmp';
const STAGED_PULL = /^\.?pull-/;
const ANYWHERE = [TEMP_PREFIX, '.tmp-'];
const AT_ROOT = /^\.publisher\.lock\./;
const IN_PRIVATE = /^\.signing-key\.pem\./;

export interface LeftoverSweepOptions {
  /** Files changed more recently than this are left alone. */
  graceMs: number;
  /** When the oldest operation of this process still running started (epoch ms). */
  busySince?: () => number | undefined;
  /** @default Date.now() */
  now?: number;
}

/** Removes the leftovers under `dataDir` no live operation owns; returns how many. */
export async function sweepLeftovers(dataDir: string, options: LeftoverSweepOptions): Promise<number> {
  const now = options.now ?? Date.now();
  const busySince = options.busySince?.();
  // The margin covers file systems that keep modification times in whole seconds.
  const cutoff = Math.min(now - options.graceMs, (busySince ?? Number.POSITIVE_INFINITY) - 2_000);
  const open = await openFiles();
  // /proc names files by their real path.
  const root = await realpath(dataDir).catch(() => dataDir);
  let removed = 0;
  const walk = async (dir: string, relative: string[]): Promise<void> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        if (relative.length === 0 && NOT_SWEPT.has(entry.name)) continue;
        await walk(path, [...relative, entry.name]);
        continue;
      }
      if (!entry.isFile() || !isLeftoverName(relative, entry.name) || open.has(path)) continue;
      try {
        const st = await stat(path);
        if (st.mtimeMs >= cutoff) continue;
        await unlink(path);
        removed++;
      } catch {
        // Gone already: its owner finished, or another process swept it.
      }
    }
  };
  await walk(root, []);
  return removed;
}

function isLeftoverName(relative: string[], name: string): boolean {
  if (ANYWHERE.some((prefix) => name.startsWith(prefix))) return true;
  if (relative.length === 0) return AT_ROOT.test(name);
  if (relative.length === 1 && relative[0] === SCRATCH_DIR) return STAGED_PULL.test(name);
  if (relative.length === 1 && relative[0] === 'private') return IN_PRIVATE.test(name);
  return false;
}

/** Paths this process holds open; empty where the platform does not say. */
async function openFiles(): Promise<Set<string>> {
  const paths = new Set<string>();
  let fds: string[];
  try {
    fds = await readdir('/proc/self/fd');
  } catch {
    return paths;
  }
  for (const fd of fds) {
    try {
      paths.add(await readlink(`/proc/self/fd/${fd}`));
    } catch {
      // Closed while we looked.
    }
  }
  return paths;
}

/** The operations of this process that are running, so a sweep leaves their files alone. */
export class LiveOperations {
  private readonly started = new Map<number, number>();
  private next = 0;

  async run<T>(operation: () => Promise<T>): Promise<T> {
    const id = this.next++;
    this.started.set(id, Date.now());
    try {
      return await operation();
    } finally {
      this.started.delete(id);
    }
  }

  /** Start of the oldest running operation (a Map iterates in insertion order). */
  oldestStart(): number | undefined {
    for (const at of this.started.values()) return at;
    return undefined;
  }
}
