/**
 * Durable file helpers for the local adapters and the agent: a write is only done once the file
 * and its directory are flushed, and a crash must never leave a half-written file under its
 * final name.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export { writeAll } from '../core/io.ts';

/** Every temp file the local adapters write starts with this, so leftovers are easy to spot and sweep. */
export const TEMP_PREFIX = '.wm-tmp-';

export function tempName(): string {
  return `${TEMP_PREFIX}${process.pid}-${randomBytes(8).toString('hex')}`;
}

export function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** Whether the process that wrote a lock or lease file still runs (EPERM: it runs as another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

/** Flushes a directory's entries (new names, renames, unlinks). Some filesystems refuse; that is not fatal. */
export async function fsyncDir(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch (err) {
    const code = errnoCode(err);
    if (
      code !== 'EISDIR' &&
      code !== 'EINVAL' &&
      code !== 'ENOTSUP' &&
      code !== 'EPERM' &&
      code !== 'EBADF'
    ) {
      throw err;
    }
  } finally {
    await handle?.close().catch(() => {});
  }
}

/**
 * fsyncDir that never fails, for callers whose renames are already visible: a failed flush
 * only weakens durability across a power loss, which is no reason to fail the operation.
 */
export async function fsyncDirBestEffort(dir: string): Promise<void> {
  await fsyncDir(dir).catch(() => {});
}

/** mkdir -p that also flushes the parents of any directory it created, so the new path survives a crash. */
export async function ensureDir(dir: string): Promise<void> {
  const first = await mkdir(dir, { recursive: true });
  if (first === undefined) return;
  // Flush from the deepest new directory up to the parent of the first one created.
  let current = dir;
  const stop = dirname(first);
  for (;;) {
    const parent = dirname(current);
    await fsyncDir(parent);
    if (parent === stop || parent === current) break;
    current = parent;
  }
}

export interface WriteNewFileOptions {
  /** @default 0o644 */
  mode?: number;
  /** chmod to exactly `mode` after creating, so the umask cannot change it. @default false */
  exactMode?: boolean;
}

/**
 * Creates `path` (EEXIST if it is there), writes `data` and flushes it to disk. The caller
 * renames or links it into place when its name must only ever show whole content.
 */
export async function writeNewFile(
  path: string,
  data: Uint8Array | string,
  options: WriteNewFileOptions = {},
): Promise<void> {
  const mode = options.mode ?? 0o644;
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data);
    if (options.exactMode) await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `path` durably: temp file beside it, fsync, rename, then a flush of the directory. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.tmp-${basename(path)}-${randomUUID()}`);
  try {
    await writeNewFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fsyncDirBestEffort(dirname(path));
}

// Thin promise wrappers over the callback fs API on raw descriptors: on thousands of small
// module files they cost noticeably less than FileHandle objects.

export function openFd(path: string, flags: string, mode: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.open(path, flags, mode, (err, fd) => (err ? reject(err) : resolve(fd))),
  );
}

export async function writeAllFd(fd: number, chunks: Buffer[]): Promise<void> {
  let pending = chunks;
  while (pending.length > 0) {
    const want = pending.reduce((n, c) => n + c.length, 0);
    const written = await new Promise<number>((resolve, reject) =>
      fs.writev(fd, pending, (err, n) => (err ? reject(err) : resolve(n))),
    );
    if (written >= want) return;
    // Short write: continue with what is left.
    let skip = written;
    const rest: Buffer[] = [];
    for (const c of pending) {
      if (skip >= c.length) skip -= c.length;
      else {
        rest.push(skip > 0 ? c.subarray(skip) : c);
        skip = 0;
      }
    }
    pending = rest;
  }
}

export function datasyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

export function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}
