/**
 * Sweeps of the data directory: delivery markers past their time to live, and crash leftovers
 * (temp files no live operation owns) and nothing else.
 */
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { LiveOperations, sweepLeftovers } from '../../shared/embedded/leftovers.ts';
import { sweepOldFiles } from '../../shared/embedded/runtime.ts';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('prunes only delivery markers older than their time to live', async () => {
  // Prepare
  dir = mkdtempSync(join(tmpdir(), 'wm-sweep-'));
  mkdirSync(join(dir, 'src'), { recursive: true });
  const old = join(dir, 'src', 'old');
  const fresh = join(dir, 'src', 'fresh');
  writeFileSync(old, '');
  writeFileSync(fresh, '');
  const eightDaysAgo = new Date(Date.now() - 8 * 24 * 3600_000);
  utimesSync(old, eightDaysAgo, eightDaysAgo);
  // Act / Assess
  expect(await sweepOldFiles(dir, 7 * 24 * 3600_000)).toBe(1);
  expect(existsSync(old)).toBe(false);
  expect(existsSync(fresh)).toBe(true);
  expect(await sweepOldFiles(join(dir, 'missing'), 1)).toBe(0);
});

it('removes crash leftovers past the grace period that no live operation owns, and nothing else', async () => {
  // Prepare
  dir = mkdtempSync(join(tmpdir(), 'wm-leftovers-'));
  const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000);
  const file = (relative: string, modified: Date) => {
    const path = join(dir, relative);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, 'x');
    utimesSync(path, modified, modified);
    return path;
  };
  const hex = 'a'.repeat(64);
  const leftovers = [
    file('tmp/pull-0d1e.wasm', minutesAgo(60)),
    file('tmp/.pull-0d1e.wasm.a1b2c3.tmp', minutesAgo(60)),
    file('modules/sha256/.wm-tmp-4242-0011223344556677', minutesAgo(60)),
    file('manifests/.tmp-latest.json-0d1e', minutesAgo(60)),
    file('.publisher.lock.stale-0d1e', minutesAgo(60)),
    file('private/.signing-key.pem.0d1e', minutesAgo(60)),
  ];
  const kept = [
    // Objects, the lock itself and queue files are never leftovers, however old.
    file(`modules/sha256/${hex}.wasm`, minutesAgo(600)),
    file('manifests/latest.json', minutesAgo(600)),
    file('publisher.lock', minutesAgo(600)),
    file('queues/mirror/tmp/1.0.0.msg', minutesAgo(600)),
    file('tmp/notes.txt', minutesAgo(600)),
    // Within the grace period: another process may be writing it.
    file('tmp/pull-fresh.wasm', minutesAgo(1)),
    // Older than the grace period but newer than an operation of ours still running.
    file('tmp/pull-busy.wasm', minutesAgo(20)),
  ];
  // Held open by this process: an operation is using it.
  const held = file('tmp/pull-held.wasm', minutesAgo(60));
  kept.push(held);
  const fd = openSync(held, 'r');
  try {
    // Act
    const removed = await sweepLeftovers(dir, {
      graceMs: 15 * 60_000,
      busySince: () => minutesAgo(25).getTime(),
    });
    // Assess
    expect(removed).toBe(leftovers.length);
  } finally {
    closeSync(fd);
  }
  for (const path of leftovers) expect(existsSync(path), path).toBe(false);
  for (const path of kept) expect(existsSync(path), path).toBe(true);
  // Act / Assess: a directory that does not exist.
  expect(await sweepLeftovers(join(dir, 'missing'), { graceMs: 0 })).toBe(0);
});

it('knows the start of the oldest operation still running', async () => {
  // Prepare
  const operations = new LiveOperations();
  // Act / Assess
  expect(operations.oldestStart()).toBeUndefined();
  let finishFirst!: () => void;
  const first = operations.run(() => new Promise<void>((r) => (finishFirst = r)));
  const firstStart = operations.oldestStart();
  await new Promise((r) => setTimeout(r, 5));
  let finishSecond!: () => void;
  const second = operations.run(() => new Promise<void>((r) => (finishSecond = r)));
  expect(operations.oldestStart()).toBe(firstStart);
  finishFirst();
  await first;
  expect(operations.oldestStart()).toBeGreaterThan(firstStart!);
  finishSecond();
  await second;
  expect(operations.oldestStart()).toBeUndefined();
  await expect(operations.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
  expect(operations.oldestStart()).toBeUndefined();
});
