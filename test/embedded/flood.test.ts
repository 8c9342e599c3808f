/**
 * A flood of unauthenticated slow uploads against the embedded server (bounded: 300 sockets,
 * 1 MiB each at most, a few seconds): resident memory stays small, and a genuine delivery is
 * still taken while it lasts. Before heads were checked ahead of bodies, each socket cost its
 * whole body in memory for as long as it held the last byte back.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { type EmbeddedMirror, startEmbedded } from '../../shared/embedded/runtime.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope } from '../support/mirror.ts';

const TOKEN = 'flood-suite-token-0123456789';
const MiB = 1024 * 1024;
const SOCKETS = 300;
const FLOOD_MS = 5_000;
/** One buffer written by every socket, so the clients themselves hold next to nothing. */
const chunk = Buffer.alloc(64 * 1024, 0x20);

describe('flood of unauthenticated slow uploads', () => {
  let dir: string;
  let mirror: EmbeddedMirror;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-flood-'));
    mirror = await startEmbedded({
      config: parseConfig(`
mirror: { name: flood }
sources:
  - { id: local, type: distribution, registry: "127.0.0.1:9", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN, rateLimitPerMinute: 100000 }
  - { id: gh, type: github, registry: "ghcr.io", repositories: ["acme/**"], webhookSecretEnv: HOOK_TOKEN }
`),
      dataDir: join(dir, 'data'),
      port: 0,
      env: { HOOK_TOKEN: TOKEN },
      logger: silentLogger,
    });
  });
  afterAll(async () => {
    await mirror?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /**
   * One slow upload: a body of 1 MiB (the cap) sent in 64 KiB steps with backpressure, the last
   * step withheld until the flood ends, so a server that buffers bodies holds it meanwhile.
   */
  const slowUpload = (path: string, headers: string, until: number) =>
    new Promise<void>((resolve) => {
      const { port } = new URL(mirror.url);
      const socket = connect(Number(port), '127.0.0.1');
      let sent = 0;
      let timer: NodeJS.Timeout | undefined;
      const finish = () => {
        clearTimeout(timer);
        socket.destroy();
        resolve();
      };
      socket.on('error', finish);
      socket.on('close', finish);
      socket.on('data', () => {});
      socket.once('connect', () => {
        socket.write(`POST ${path} HTTP/1.1\r\nhost: mirror\r\ncontent-length: ${MiB}\r\n${headers}\r\n`);
        const step = () => {
          if (socket.destroyed) return finish();
          if (sent + chunk.length >= MiB || Date.now() > until) {
            timer = setTimeout(finish, Math.max(0, until - Date.now()));
            return;
          }
          sent += chunk.length;
          if (socket.write(chunk)) timer = setTimeout(step, 20);
          else socket.once('drain', () => (timer = setTimeout(step, 20)));
        };
        step();
      });
    });

  it('keeps resident memory small and still takes a genuine delivery', async () => {
    // Prepare
    // Loaded before measuring: fetch's first use costs memory of its own.
    expect((await fetch(`${mirror.url}/healthz`)).status).toBe(200);
    const before = process.memoryUsage().rss;
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 50);
    const until = Date.now() + FLOOD_MS;
    const forged = `sha256=${'0'.repeat(64)}`;
    // Act
    const flood = Promise.all(
      Array.from({ length: SOCKETS }, (_, i) =>
        i % 3 === 2
          ? slowUpload(
              '/hooks/gh',
              `x-hub-signature-256: ${forged}\r\nx-github-event: registry_package\r\n`,
              until,
            )
          : slowUpload('/hooks/local', 'authorization: Bearer not-the-token\r\n', until),
      ),
    );
    await new Promise((r) => setTimeout(r, 1_000));
    const res = await fetch(`${mirror.url}/hooks/local`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: distributionEnvelope([
        { repository: 'plugins/a', tag: '1.0', digest: `sha256:${'c'.repeat(64)}`, host: '127.0.0.1:9' },
      ]),
    });
    await flood;
    await new Promise((r) => setTimeout(r, 500));
    clearInterval(sampler);
    const after = process.memoryUsage().rss;
    // Assess
    expect(res.status).toBe(202);
    const growth = (peak - before) / MiB;
    // 300 bodies of 1 MiB held at once would be 300 MiB and more.
    expect(growth, `peak RSS growth ${growth.toFixed(0)} MiB`).toBeLessThan(100);
    expect((after - before) / MiB).toBeLessThan(100);
  }, 30_000);
});
