/**
 * `/status` stays small however many dead letters pile up: counts plus the newest few, and the
 * rest paged by `deadLetterPage` (what `/status/dead-letters` serves), newest first, reading only
 * the page.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DiskQueue } from '../../shared/adapters/local/disk-queue.ts';
import { parseConfig } from '../../shared/core/config.ts';
import type { MirrorJob } from '../../shared/core/domain.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import {
  dataPaths,
  deadLetterPage,
  type EmbeddedMirror,
  STATUS_DEAD_LETTERS,
  startEmbedded,
} from '../../shared/embedded/runtime.ts';

const DEAD = 45;

interface StatusBody {
  queues: { mirror: { dead: number } };
  deadLetters: {
    messageId: string;
    job: { repository: string };
    attempts: number;
    error: { code: string };
  }[];
  deadLettersPage: { queue: string; shown: number; total: number; next: string | null };
}

function job(n: number): MirrorJob {
  return {
    sourceId: 'gone',
    registry: 'registry.example',
    repository: `plugins/dead-${n}`,
    tag: '1.0',
    receivedAt: new Date().toISOString(),
  };
}

describe('/status with many dead letters', () => {
  let dataDir: string;
  let mirror: EmbeddedMirror;
  let queues: { mirror: DiskQueue<MirrorJob>; publish: DiskQueue<PublishRequest> };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'wm-status-dead-'));
    // Dead letters as a previous run left them: each job failed its only delivery.
    const paths = dataPaths(dataDir);
    const earlier = new DiskQueue<MirrorJob>({ dir: paths.mirrorQueue, maxAttempts: 1, pollIntervalMs: 10 });
    for (let n = 0; n < DEAD; n++) await earlier.send(job(n));
    earlier.start(async () => {
      throw new Error('registry gone');
    });
    const deadline = Date.now() + 20_000;
    while ((await earlier.depth()).dead < DEAD) {
      if (Date.now() > deadline) throw new Error('dead letters never appeared');
      await new Promise((r) => setTimeout(r, 20));
    }
    await earlier.stop();
    mirror = await startEmbedded({
      config: parseConfig('mirror: { name: status-dead }'),
      dataDir,
      port: 0,
      env: {},
      logger: silentLogger,
    });
    queues = {
      mirror: new DiskQueue<MirrorJob>({ dir: paths.mirrorQueue }),
      publish: new DiskQueue<PublishRequest>({ dir: paths.publishQueue }),
    };
  });
  afterAll(async () => {
    await mirror?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('shows counts and only the newest dead letters', async () => {
    // Act
    const status = (await (await fetch(`${mirror.url}/status`)).json()) as StatusBody;

    // Assess
    expect(status.queues.mirror.dead).toBe(DEAD);
    expect(status.deadLetters).toHaveLength(STATUS_DEAD_LETTERS);
    expect(status.deadLetters.map((d) => d.job.repository)).toEqual(
      Array.from({ length: STATUS_DEAD_LETTERS }, (_, i) => `plugins/dead-${DEAD - 1 - i}`),
    );
    expect(status.deadLetters[0]).toMatchObject({ attempts: 1, error: { code: 'INTERNAL' } });
    expect(status.deadLettersPage).toMatchObject({
      queue: 'mirror',
      shown: STATUS_DEAD_LETTERS,
      total: DEAD,
    });
    expect(status.deadLettersPage.next).toMatch(
      /^\/status\/dead-letters\?queue=mirror&limit=100&cursor=\d{15}-/,
    );
  });

  it('serves the next page over HTTP, and refuses a bad query with 400', async () => {
    // Prepare
    const status = (await (await fetch(`${mirror.url}/status`)).json()) as StatusBody;

    // Act
    const next = await fetch(`${mirror.url}${status.deadLettersPage.next}`);
    const bad = await fetch(`${mirror.url}/status/dead-letters?queue=elsewhere`);

    // Assess
    expect(next.status).toBe(200);
    const page = (await next.json()) as { queue: string; total: number; items: unknown[] };
    expect(page).toMatchObject({ queue: 'mirror', total: DEAD });
    expect(page.items).toHaveLength(Math.min(100, DEAD - STATUS_DEAD_LETTERS));
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ code: 'USAGE' });
  });

  it('pages through every dead letter, newest first, with cursors', async () => {
    // Act
    const seen: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const query = new URLSearchParams({ queue: 'mirror', limit: '20' });
      if (cursor !== null) query.set('cursor', cursor);
      const page = await deadLetterPage(queues, query);
      sizes.push(page.items.length);
      seen.push(...page.items.map((d) => (d.job as MirrorJob).repository));
      cursor = page.next;
      if (cursor !== null) expect(page.nextPath).toContain(`cursor=${cursor}`);
    } while (cursor !== null);

    // Assess
    expect(sizes).toEqual([20, 20, 5]);
    expect(seen).toEqual(Array.from({ length: DEAD }, (_, i) => `plugins/dead-${DEAD - 1 - i}`));
    expect(await deadLetterPage(queues, new URLSearchParams('queue=publish'))).toEqual({
      queue: 'publish',
      total: 0,
      items: [],
      next: null,
      nextPath: null,
    });
  });

  it('refuses bad parameters with USAGE', async () => {
    for (const bad of ['queue=other', 'limit=0', 'limit=1001', 'limit=ten', 'cursor=..%2Fkeys']) {
      await expect(deadLetterPage(queues, new URLSearchParams(bad)), bad).rejects.toMatchObject({
        code: 'USAGE',
      });
    }
  });
});
