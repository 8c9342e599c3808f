/**
 * Crash leftovers in the data directory (staged pulls, the object store's temp files) are swept
 * when the server starts, before any consumer runs, and from then on periodically.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { defaultConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { startEmbedded } from '../../shared/embedded/runtime.ts';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const leftover = (relative: string, minutesOld: number) => {
  const path = join(dir, relative);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, Buffer.alloc(1024));
  const then = new Date(Date.now() - minutesOld * 60_000);
  utimesSync(path, then, then);
  return path;
};

it('sweeps what a crash left at start and then periodically, sparing what may still be written', async () => {
  // Prepare
  dir = mkdtempSync(join(tmpdir(), 'wm-leftovers-e2e-'));
  const atStart = [
    leftover('tmp/pull-3f9a2c.wasm', 60),
    leftover('tmp/.pull-3f9a2c.wasm.0a1b2c3d4e5f.tmp', 60),
    leftover('modules/sha256/.wm-tmp-99999-0011223344556677', 60),
  ];
  const young = leftover('tmp/pull-young.wasm', 1);
  // Act
  const mirror = await startEmbedded({
    config: defaultConfig(),
    dataDir: dir,
    port: 0,
    env: {},
    logger: silentLogger,
    leftovers: { graceMs: 15 * 60_000, intervalMs: 200 },
  });
  try {
    // Assess
    for (const path of atStart) expect(existsSync(path), path).toBe(false);
    expect(existsSync(young)).toBe(true);
    // Act
    // Left while running (another process crashed mid-pull): gone at the next sweep.
    const later = leftover('tmp/pull-later.wasm', 60);
    const deadline = Date.now() + 5_000;
    while (existsSync(later) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    // Assess
    expect(existsSync(later)).toBe(false);
    expect(existsSync(young)).toBe(true);
    const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
    // The object store sweeps its own temp files when it opens; the staged pulls are ours to count.
    const removed = /^wasm_mirror_leftovers_removed_total (\d+)$/m.exec(metrics);
    expect(Number(removed?.[1])).toBeGreaterThanOrEqual(3);
  } finally {
    await mirror.stop();
  }
});
