import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { lockDataDir, lockHolder, tryLockDataDir } from '../../shared/embedded/lock.ts';

const TAKER = join(import.meta.dirname, 'fixtures', 'lock-taker.ts');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wm-lock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;

it('is held by one holder at a time and released only by its holder', async () => {
  const lock = await lockDataDir(dir, 'serve');
  expect(await tryLockDataDir(dir, 'mirror')).toBeUndefined();
  expect(await lockHolder(dir)).toEqual({ pid: process.pid, purpose: 'serve' });
  await expect(lockDataDir(dir, 'serve')).rejects.toMatchObject({ code: 'USAGE' });
  await lock.release();
  const again = await tryLockDataDir(dir, 'mirror');
  expect(again).toBeDefined();
  await lock.release(); // a second release of the old lock must not remove the new one
  expect(await lockHolder(dir)).toMatchObject({ purpose: 'mirror' });
  await again!.release();
  expect(readdirSync(dir)).toEqual([]);
});

it('takes over the lock of a process that died', async () => {
  writeFileSync(
    join(dir, 'publisher.lock'),
    JSON.stringify({ pid: deadPid(), purpose: 'serve', token: 'old' }),
  );
  const lock = await tryLockDataDir(dir, 'serve');
  expect(lock).toBeDefined();
  expect(await lockHolder(dir)).toEqual({ pid: process.pid, purpose: 'serve' });
  await lock!.release();
  expect(existsSync(join(dir, 'publisher.lock'))).toBe(false);
});

it('takes over a lock naming its own pid that it never issued (a restarted PID 1)', async () => {
  writeFileSync(
    join(dir, 'publisher.lock'),
    JSON.stringify({ pid: process.pid, purpose: 'serve', token: 'before-the-crash' }),
  );
  const lock = await tryLockDataDir(dir, 'serve');
  expect(lock).toBeDefined();
  expect(await tryLockDataDir(dir, 'mirror')).toBeUndefined();
  await lock!.release();
});

it("lets exactly one of several processes racing for a dead holder's lock win", async () => {
  for (let round = 0; round < 3; round++) {
    writeFileSync(
      join(dir, 'publisher.lock'),
      JSON.stringify({ pid: deadPid(), purpose: 'serve', token: `dead-${round}` }),
    );
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        promisify(execFile)(process.execPath, ['--import', 'tsx', TAKER, dir, '3000'], {
          encoding: 'utf8',
        }).then((r) => r.stdout.trim()),
      ),
    );
    expect(
      results.filter((r) => r === 'locked'),
      results.join(','),
    ).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([]);
  }
}, 60_000);
