/**
 * One publisher per data directory. The server holds the lock while it runs; `wasm-mirror
 * mirror` takes it only when no server does, and otherwise hands its result to the server's
 * publish queue. A lock left by a process that died (kill -9) is taken over.
 */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { processAlive, writeNewFile } from '../adapters/local/fs-util.ts';
import { WasmMirrorError } from '../errors.ts';

export interface DataDirLock {
  release(): Promise<void>;
}

const LOCK_FILE = 'publisher.lock';

export async function tryLockDataDir(dataDir: string, purpose: string): Promise<DataDirLock | undefined> {
  const path = join(dataDir, LOCK_FILE);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await writeNewFile(
        path,
        JSON.stringify({ pid: process.pid, purpose, since: new Date().toISOString() }),
        {
          mode: 0o600,
        },
      );
      let released = false;
      return {
        release: async () => {
          if (released) return;
          released = true;
          await rm(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = await lockHolder(dataDir);
      if (holder !== undefined && isAlive(holder.pid)) return undefined;
      // The holder died without releasing: remove its lock and try again.
      await rm(path, { force: true });
    }
  }
  return undefined;
}

export async function lockDataDir(dataDir: string, purpose: string): Promise<DataDirLock> {
  const lock = await tryLockDataDir(dataDir, purpose);
  if (lock === undefined) {
    const holder = await lockHolder(dataDir);
    throw new WasmMirrorError(
      'USAGE',
      `data directory ${dataDir} is in use by process ${holder?.pid ?? '?'} (${holder?.purpose ?? 'unknown'})`,
    );
  }
  return lock;
}

export async function lockHolder(dataDir: string): Promise<{ pid: number; purpose: string } | undefined> {
  try {
    const parsed = JSON.parse(await readFile(join(dataDir, LOCK_FILE), 'utf8')) as {
      pid?: unknown;
      purpose?: unknown;
    };
    if (typeof parsed.pid !== 'number') return undefined;
    return { pid: parsed.pid, purpose: String(parsed.purpose ?? '') };
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  return pid === process.pid || processAlive(pid);
}
