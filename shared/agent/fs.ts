/** Durable file replacement: temp file, fsync, rename, fsync of the directory. */

import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o644): Promise<void> {
  const tmp = join(dirname(path), `.tmp-${basename(path)}-${randomUUID()}`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dirname(path));
}

/** Makes renames in `dir` durable; ignored where directories cannot be opened for sync. */
export async function syncDir(dir: string): Promise<void> {
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // Some platforms (Windows) refuse fsync on directories; the rename itself is still atomic.
  }
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
