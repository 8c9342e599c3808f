/**
 * Small filesystem helpers shared by the local adapters: durable writes need the file and its
 * directory flushed, and a crash must never leave a half-written file under its final name.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';

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

/** FileHandle.write may write less than asked; loop until the whole chunk is down. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset);
    offset += bytesWritten;
  }
}
