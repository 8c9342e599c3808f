import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { main } from '../../shared/cli/main.ts';
import { defaultConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { lockDataDir, lockHolder, tryLockDataDir } from '../../shared/embedded/lock.ts';
import { startEmbedded } from '../../shared/embedded/runtime.ts';

const TAKER = join(import.meta.dirname, 'fixtures', 'lock-taker.ts');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wm-lock-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;

it('is held by one holder at a time and released only by its holder', async () => {
  // Act / Assess
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
  // Prepare
  writeFileSync(
    join(dir, 'publisher.lock'),
    JSON.stringify({ pid: deadPid(), purpose: 'serve', token: 'old' }),
  );
  // Act
  const lock = await tryLockDataDir(dir, 'serve');
  // Assess
  expect(lock).toBeDefined();
  expect(await lockHolder(dir)).toEqual({ pid: process.pid, purpose: 'serve' });
  await lock!.release();
  expect(existsSync(join(dir, 'publisher.lock'))).toBe(false);
});

it('takes over a lock naming its own pid that it never issued (a restarted PID 1)', async () => {
  // Prepare
  writeFileSync(
    join(dir, 'publisher.lock'),
    JSON.stringify({ pid: process.pid, purpose: 'serve', token: 'before-the-crash' }),
  );
  // Act
  const lock = await tryLockDataDir(dir, 'serve');
  // Assess
  expect(lock).toBeDefined();
  expect(await tryLockDataDir(dir, 'mirror')).toBeUndefined();
  await lock!.release();
});

it("lets exactly one of several processes racing for a dead holder's lock win", async () => {
  for (let round = 0; round < 3; round++) {
    // Prepare
    writeFileSync(
      join(dir, 'publisher.lock'),
      JSON.stringify({ pid: deadPid(), purpose: 'serve', token: `dead-${round}` }),
    );
    // Act
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        promisify(execFile)(process.execPath, ['--import', 'tsx', TAKER, dir, '3000'], {
          encoding: 'utf8',
        }).then((r) => r.stdout.trim()),
      ),
    );
    // Assess
    expect(
      results.filter((r) => r === 'locked'),
      results.join(','),
    ).toHaveLength(1);
    expect(readdirSync(dir)).toEqual([]);
  }
}, 60_000);

describe('a lock file that names no holder', () => {
  const lockFile = () => join(dir, 'publisher.lock');
  const age = (path: string, seconds: number) => {
    const then = new Date(Date.now() - seconds * 1000);
    utimesSync(path, then, then);
  };

  it.each([
    ['empty', ''],
    ['truncated', '{"pid":12'],
    ['garbage', 'not a lock at all'],
    ['without a token', '{"pid":1}'],
  ])('is taken over once it has not changed for a few seconds (%s)', async (_what, content) => {
    // Prepare
    writeFileSync(lockFile(), content);
    age(lockFile(), 30);
    // Act
    const lock = await tryLockDataDir(dir, 'serve');
    // Assess
    expect(lock).toBeDefined();
    expect(await lockHolder(dir)).toEqual({ pid: process.pid, purpose: 'serve' });
    await lock!.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it('is not taken while it may still be being written, and serve waits for it to go stale', async () => {
    // Prepare
    writeFileSync(lockFile(), '');
    // Act / Assess
    expect(await tryLockDataDir(dir, 'mirror')).toBeUndefined();
    expect(existsSync(lockFile())).toBe(true);
    const started = Date.now();
    const lock = await lockDataDir(dir, 'serve');
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(await lockHolder(dir)).toEqual({ pid: process.pid, purpose: 'serve' });
    await lock.release();
  }, 20_000);
});

describe('serve on an unusable data directory', () => {
  const start = (dataDir: string) =>
    startEmbedded({ config: defaultConfig(), dataDir, port: 0, env: {}, logger: silentLogger });

  it('fails at once with USAGE and says why', async () => {
    // Prepare
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    // Act / Assess
    const started = Date.now();
    await expect(start(file)).rejects.toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(
        /data directory .*a-file is not usable: it exists and is not a directory/,
      ),
    });
    await expect(start(join(file, 'sub'))).rejects.toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(/is not usable: it, or a parent of it, is not a directory/),
    });
    const lockIsADirectory = join(dir, 'odd');
    mkdirSync(join(lockIsADirectory, 'publisher.lock'), { recursive: true });
    await expect(start(lockIsADirectory)).rejects.toMatchObject({
      code: 'USAGE',
      message: expect.stringMatching(/publisher\.lock is not a lock file/),
    });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('exits 2 from `wasm-mirror serve --data` with the reason on stderr', async () => {
    // Prepare
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    let stderr = '';
    // Act
    const code = await main(['serve', '--data', file, '--port', '0'], {
      stdout: { write: () => true },
      stderr: { write: (chunk: string) => (stderr += chunk) },
      stdin: (async function* () {})(),
      env: {},
    });
    // Assess
    expect(code).toBe(2);
    expect(stderr).toMatch(/USAGE: data directory .*a-file is not usable/);
  });
});
