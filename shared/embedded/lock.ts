/**
 * One publisher per data directory. The server holds the lock while it runs; `wasm-mirror
 * mirror` takes it only when no server does, and otherwise hands its result to the server's
 * publish queue. A lock left by a process that died (kill -9) is taken over.
 *
 * The lock file appears complete or not at all (written aside, then hard-linked into place), and
 * carries a random token: a takeover moves the stale file aside and checks it moved the very file
 * it inspected (same inode), and a release removes only its own file.
 *
 * A lock file that names no holder (empty, truncated, garbage: a disk that filled up, an editor,
 * another tool) is stale once it has not changed for STALE_INVALID_LOCK_MS: a writer that is
 * writing it right now is never robbed, and a broken file never blocks the directory for good.
 */
import { randomUUID } from 'node:crypto';
import type { Stats } from 'node:fs';
import { type FileHandle, link, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { WasmMirrorError } from '../core/errors.ts';
import { errnoCode, processAlive, writeNewFile } from '../platform/files.ts';

export interface DataDirLock {
  release(): Promise<void>;
}

interface LockContent {
  pid: number;
  purpose: string;
  token: string;
  since: string;
}

/** What is at the lock's path, read through one descriptor so content and inode belong together. */
type LockState =
  | { kind: 'missing' }
  | { kind: 'held'; holder: LockContent; file: FileIdentity }
  | { kind: 'invalid'; file: FileIdentity; unchangedMs: number };

interface FileIdentity {
  dev: number;
  ino: number;
}

const LOCK_FILE = 'publisher.lock';

/** How long a lock file without a valid holder must stay unchanged before it is taken over. */
export const STALE_INVALID_LOCK_MS = 5_000;

/** Locks this process holds. A lock naming our pid but none of these was left by an earlier run
 * that had the same pid (a container's PID 1 restarted after a crash). */
const issuedTokens = new Set<string>();

function isLive(holder: LockContent): boolean {
  if (holder.pid === process.pid) return issuedTokens.has(holder.token);
  return processAlive(holder.pid);
}

function isStale(state: LockState): boolean {
  if (state.kind === 'held') return !isLive(state.holder);
  return state.kind === 'invalid' && state.unchangedMs >= STALE_INVALID_LOCK_MS;
}

/**
 * Creates the data directory if need be and checks it is one. Throws USAGE naming the path
 * and the reason (not a directory, no permission, read-only) instead of a bare errno.
 */
export async function ensureDataDir(dataDir: string): Promise<void> {
  try {
    await mkdir(dataDir, { recursive: true });
  } catch (err) {
    throw unusable(dataDir, err);
  }
  let st: Stats;
  try {
    st = await stat(dataDir);
  } catch (err) {
    throw unusable(dataDir, err);
  }
  if (!st.isDirectory())
    throw unusable(dataDir, Object.assign(new Error('not a directory'), { code: 'ENOTDIR' }));
}

export async function tryLockDataDir(dataDir: string, purpose: string): Promise<DataDirLock | undefined> {
  const path = join(dataDir, LOCK_FILE);
  const token = randomUUID();
  const content: LockContent = { pid: process.pid, purpose, token, since: new Date().toISOString() };
  const aside = join(dataDir, `.${LOCK_FILE}.${token}`);
  try {
    await writeNewFile(aside, JSON.stringify(content), { mode: 0o600 });
  } catch (err) {
    // The first write into the directory: a path that cannot hold the lock fails here, at once.
    throw unusable(dataDir, err);
  }
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(aside, path);
        issuedTokens.add(token);
        return {
          release: async () => {
            await releaseIfOurs(path, token);
            issuedTokens.delete(token);
          },
        };
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw unusable(dataDir, err);
      }
      const state = await inspectLock(path);
      // Released between our link and our look: try again.
      if (state.kind === 'missing') continue;
      if (!isStale(state)) return undefined;
      await takeOverStale(dataDir, path, state.file);
    }
    return undefined;
  } finally {
    await rm(aside, { force: true });
  }
}

/**
 * Takes the lock or throws USAGE naming the holder. A lock file without a valid holder is
 * waited for until it is stale (a few seconds), then taken over.
 */
export async function lockDataDir(dataDir: string, purpose: string): Promise<DataDirLock> {
  const deadline = Date.now() + STALE_INVALID_LOCK_MS + 2_000;
  for (;;) {
    const lock = await tryLockDataDir(dataDir, purpose);
    if (lock !== undefined) return lock;
    const state = await inspectLock(join(dataDir, LOCK_FILE));
    const waitForIt = state.kind === 'missing' || state.kind === 'invalid';
    if (!waitForIt || Date.now() >= deadline) throw busy(dataDir, state);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export async function lockHolder(dataDir: string): Promise<{ pid: number; purpose: string } | undefined> {
  const state = await inspectLock(join(dataDir, LOCK_FILE));
  return state.kind === 'held' ? { pid: state.holder.pid, purpose: state.holder.purpose } : undefined;
}

function busy(dataDir: string, state: LockState): WasmMirrorError {
  const path = join(dataDir, LOCK_FILE);
  if (state.kind === 'held') {
    return new WasmMirrorError(
      'USAGE',
      `data directory ${dataDir} is in use by process ${state.holder.pid} (${state.holder.purpose || 'unknown'}); if no such process runs, remove ${path}`,
    );
  }
  if (state.kind === 'missing') {
    return new WasmMirrorError(
      'USAGE',
      `data directory ${dataDir} is being locked and released by others; try again`,
    );
  }
  return new WasmMirrorError(
    'USAGE',
    `data directory ${dataDir} is locked by ${path}, which names no holder and keeps changing; if no wasm-mirror process runs, remove it`,
  );
}

function unusable(dataDir: string, err: unknown): WasmMirrorError {
  const code = errnoCode(err);
  const why: Record<string, string> = {
    ENOTDIR: 'it, or a parent of it, is not a directory',
    EEXIST: 'it exists and is not a directory',
    ENOENT: 'it does not exist',
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'the file system is read-only',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'the disk quota is exhausted',
  };
  const reason =
    (code !== undefined ? why[code] : undefined) ?? (err instanceof Error ? err.message : String(err));
  return new WasmMirrorError('USAGE', `data directory ${dataDir} is not usable: ${reason}`, { cause: err });
}

async function inspectLock(path: string): Promise<LockState> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return { kind: 'missing' };
    throw err;
  }
  try {
    const st = await handle.stat();
    if (!st.isFile()) {
      throw new WasmMirrorError('USAGE', `${path} is not a lock file (not a regular file); remove it`);
    }
    const file = { dev: st.dev, ino: st.ino };
    // A lock is a few hundred bytes; a big file is not one, and is not read whole.
    const text = st.size > 4096 ? '' : await handle.readFile('utf8');
    const holder = parseLock(text);
    if (holder !== undefined) return { kind: 'held', holder, file };
    return { kind: 'invalid', file, unchangedMs: Math.abs(Date.now() - st.mtimeMs) };
  } finally {
    await handle.close();
  }
}

function parseLock(text: string): LockContent | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<LockContent> | null;
    if (typeof parsed?.pid !== 'number' || typeof parsed.token !== 'string') return undefined;
    return {
      pid: parsed.pid,
      purpose: String(parsed.purpose ?? ''),
      token: parsed.token,
      since: String(parsed.since),
    };
  } catch {
    return undefined;
  }
}

/** Moves the stale lock aside; if another process replaced it meanwhile, puts that one back. */
async function takeOverStale(dataDir: string, path: string, inspected: FileIdentity): Promise<void> {
  const moved = join(dataDir, `.${LOCK_FILE}.stale-${randomUUID()}`);
  try {
    await rename(path, moved);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  const st = await stat(moved).catch(() => undefined);
  if (st !== undefined && (st.ino !== inspected.ino || st.dev !== inspected.dev)) {
    // Another process took over first: its lock is live, restore it (unless yet another exists).
    await link(moved, path).catch(() => {});
  }
  await rm(moved, { force: true });
}

async function releaseIfOurs(path: string, token: string): Promise<void> {
  const state = await inspectLock(path).catch(() => undefined);
  if (state?.kind === 'held' && state.holder.token === token) await rm(path, { force: true });
}
