/**
 * One publisher per data directory. The server holds the lock while it runs; `wasm-mirror
 * mirror` takes it only when no server does, and otherwise hands its result to the server's
 * publish queue. A lock left by a process that died (kill -9) is taken over.
 *
 * The lock file appears complete or not at all (written aside, then hard-linked into place), and
 * carries a random token: a takeover moves the dead holder's file aside and checks it moved the
 * file it inspected, and a release removes only its own file.
 */
import { randomUUID } from 'node:crypto';
import { link, readFile, rename, rm } from 'node:fs/promises';
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

const LOCK_FILE = 'publisher.lock';

/** Locks this process holds. A lock naming our pid but none of these was left by an earlier run
 * that had the same pid (a container's PID 1 restarted after a crash). */
const issuedTokens = new Set<string>();

function isLive(holder: LockContent): boolean {
  if (holder.pid === process.pid) return issuedTokens.has(holder.token);
  return processAlive(holder.pid);
}

export async function tryLockDataDir(dataDir: string, purpose: string): Promise<DataDirLock | undefined> {
  const path = join(dataDir, LOCK_FILE);
  const token = randomUUID();
  const content: LockContent = { pid: process.pid, purpose, token, since: new Date().toISOString() };
  const aside = join(dataDir, `.${LOCK_FILE}.${token}`);
  await writeNewFile(aside, JSON.stringify(content), { mode: 0o600 });
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
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      const holder = await readLock(path);
      if (holder === undefined || isLive(holder)) return undefined;
      await takeOverStale(dataDir, path, holder);
    }
    return undefined;
  } finally {
    await rm(aside, { force: true });
  }
}

export async function lockDataDir(dataDir: string, purpose: string): Promise<DataDirLock> {
  const lock = await tryLockDataDir(dataDir, purpose);
  if (lock === undefined) {
    const holder = await lockHolder(dataDir);
    throw new WasmMirrorError(
      'USAGE',
      `data directory ${dataDir} is in use by process ${holder?.pid ?? '?'} (${holder?.purpose ?? 'unknown'}); if no such process runs, remove ${join(dataDir, LOCK_FILE)}`,
    );
  }
  return lock;
}

export async function lockHolder(dataDir: string): Promise<{ pid: number; purpose: string } | undefined> {
  const held = await readLock(join(dataDir, LOCK_FILE));
  return held === undefined ? undefined : { pid: held.pid, purpose: held.purpose };
}

async function readLock(path: string): Promise<LockContent | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path, 'utf8')) as Partial<LockContent>;
    if (typeof parsed.pid !== 'number' || typeof parsed.token !== 'string') return undefined;
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

/** Moves the dead holder's lock aside; if another process replaced it meanwhile, puts that one back. */
async function takeOverStale(dataDir: string, path: string, dead: LockContent): Promise<void> {
  const moved = join(dataDir, `.${LOCK_FILE}.stale-${randomUUID()}`);
  try {
    await rename(path, moved);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  const what = await readLock(moved);
  if (what !== undefined && what.token !== dead.token) {
    // Another process took over first: its lock is live, restore it (unless yet another exists).
    await link(moved, path).catch(() => {});
  }
  await rm(moved, { force: true });
}

async function releaseIfOurs(path: string, token: string): Promise<void> {
  const held = await readLock(path);
  if (held?.token === token) await rm(path, { force: true });
}
