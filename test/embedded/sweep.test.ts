import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { sweepOldFiles } from '../../shared/embedded/runtime.ts';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('prunes only delivery markers older than their time to live', async () => {
  dir = mkdtempSync(join(tmpdir(), 'wm-sweep-'));
  mkdirSync(join(dir, 'src'), { recursive: true });
  const old = join(dir, 'src', 'old');
  const fresh = join(dir, 'src', 'fresh');
  writeFileSync(old, '');
  writeFileSync(fresh, '');
  const eightDaysAgo = new Date(Date.now() - 8 * 24 * 3600_000);
  utimesSync(old, eightDaysAgo, eightDaysAgo);
  expect(await sweepOldFiles(dir, 7 * 24 * 3600_000)).toBe(1);
  expect(existsSync(old)).toBe(false);
  expect(existsSync(fresh)).toBe(true);
  expect(await sweepOldFiles(join(dir, 'missing'), 1)).toBe(0);
});
