import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { defaultConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { startEmbedded } from '../../shared/embedded/runtime.ts';

let dir: string;
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it('leaves nothing running when it cannot start, and the data directory free', async () => {
  // Prepare: the port is taken.
  dir = mkdtempSync(join(tmpdir(), 'wm-startup-'));
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const port = (taken.address() as { port: number }).port;
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const before = timers();
  try {
    // Act / Assess
    await expect(
      startEmbedded({ config: defaultConfig(), dataDir: dir, port, env: {}, logger: silentLogger }),
    ).rejects.toThrow(/EADDRINUSE/);
    await new Promise((r) => setTimeout(r, 300));
    expect(timers()).toBeLessThanOrEqual(before);
    // The lock was released: a second start on a free port works.
    const mirror = await startEmbedded({
      config: defaultConfig(),
      dataDir: dir,
      port: 0,
      env: {},
      logger: silentLogger,
    });
    await mirror.stop();
  } finally {
    taken.close();
  }
});
