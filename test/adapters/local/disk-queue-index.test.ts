/**
 * Claiming from the disk queue's in-memory index of ready/: a claim must not list the directory
 * (at 60,000 waiting messages that made draining crawl), while FIFO order, delays, messages from
 * other processes and crash recovery behave as when every claim listed it. The test counts
 * directory listings, not time.
 */
import type * as fsPromises from 'node:fs/promises';
import { link, mkdtemp, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DiskQueue, type DiskQueueOptions } from '../../../shared/adapters/local/disk-queue.ts';
import { waitFor } from '../../contract/queue.contract.ts';
import { ManualTime } from './fixtures/manual-time.ts';

const listings = vi.hoisted(() => ({ ready: 0 }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof fsPromises>();
  const readdirCounted = ((path: Parameters<typeof actual.readdir>[0], ...rest: unknown[]) => {
    if (basename(String(path)) === 'ready') listings.ready++;
    return (actual.readdir as (...args: unknown[]) => unknown)(path, ...rest);
  }) as typeof actual.readdir;
  return { ...actual, readdir: readdirCounted };
});

type Msg = { n: number };

const fast = { pollIntervalMs: 20, backoffBaseMs: 20, backoffMaxMs: 200 } satisfies Partial<DiskQueueOptions>;

describe('DiskQueue claims from an index of ready/', () => {
  let dir: string;
  let time: ManualTime;
  const queues: DiskQueue<Msg>[] = [];
  const open = (options: Partial<DiskQueueOptions> = {}) => {
    const q = new DiskQueue<Msg>({ dir, ...fast, clock: time, scheduler: time, ...options });
    queues.push(q);
    return q;
  };
  const until = (predicate: () => boolean | Promise<boolean>, what?: string) =>
    waitFor(predicate, 10_000, what, time);

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wm-queue-index-'));
    time = new ManualTime();
    listings.ready = 0;
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('drains 400 messages in FIFO order without listing ready/ for each claim', async () => {
    // Prepare
    const producer = open();
    for (let n = 0; n < 400; n += 20) {
      await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send({ n: n + i })));
    }
    const consumer = open();
    const batches: number[][] = [];
    listings.ready = 0;

    // Act
    consumer.startBatch(
      async (bodies) => {
        batches.push(bodies.map((b) => b.n));
      },
      { maxBatch: 5 },
    );
    await until(() => batches.flat().length === 400, '400 messages');
    const listingsWhileDraining = listings.ready;

    // Assess
    // Message ids are taken in call order, so even sends that ran 20 at a time are FIFO.
    expect(batches.flat()).toEqual(Array.from({ length: 400 }, (_, n) => n));
    expect(batches.length).toBeGreaterThanOrEqual(80);
    // One listing to build the index, a few more once it runs dry; never one per claim.
    expect(listingsWhileDraining).toBeLessThan(10);
  });

  it('keeps strict FIFO for messages sent one after another, and a retry holds back later ones', async () => {
    // Prepare
    // No jitter: the whole failed batch is due again at one moment.
    const q = open({ backoffBaseMs: 100, backoffMaxMs: 100, random: () => 1 });
    for (let n = 0; n < 30; n++) await q.send({ n });
    const calls: number[][] = [];
    let failedOnce = false;

    // Act
    q.startBatch(
      async (bodies) => {
        calls.push(bodies.map((b) => b.n));
        if (!failedOnce && bodies.some((b) => b.n === 12)) {
          failedOnce = true;
          throw new Error('publish failed');
        }
      },
      { maxBatch: 10 },
    );
    await until(() => new Set(calls.flat()).size === 30, 'all 30');

    // Assess
    expect(calls).toEqual([
      Array.from({ length: 10 }, (_, n) => n),
      Array.from({ length: 10 }, (_, n) => n + 10),
      Array.from({ length: 10 }, (_, n) => n + 10),
      Array.from({ length: 10 }, (_, n) => n + 20),
    ]);
  });

  it('delivers a delayed message at its time, not before, and the others meanwhile', async () => {
    // Prepare
    const q = open();
    const seen: Array<{ n: number; at: number }> = [];
    const start = time.nowMs();
    q.start(async (b) => {
      seen.push({ n: b.n, at: time.nowMs() - start });
    });
    await until(async () => (await q.depth()).ready === 0);

    // Act
    await q.send({ n: 1 }, { delaySeconds: 5 });
    await q.send({ n: 2 });
    await q.send({ n: 3 }, { delaySeconds: 1 });
    await until(() => seen.length === 1, 'the undelayed message');
    const beforeDelays = seen.map((s) => s.n);
    await until(() => seen.length === 3, 'the delayed ones');

    // Assess
    expect(beforeDelays).toEqual([2]);
    expect(seen.map((s) => s.n)).toEqual([2, 3, 1]);
    expect(seen[1]!.at).toBeGreaterThanOrEqual(1000);
    expect(seen[2]!.at).toBeGreaterThanOrEqual(5000);
  });

  it('finds what another instance sends or redrives while the consumer is busy or idle', async () => {
    // Prepare
    const consumer = open({ maxAttempts: 1 });
    const other = open();
    const seen: number[] = [];
    let failN = 2;
    consumer.start(async (b) => {
      if (b.n === failN) throw new Error('not yet');
      seen.push(b.n);
    });
    await other.send({ n: 1 });
    await until(() => seen.length === 1, 'a message sent by another instance');
    await other.send({ n: 2 });
    await until(async () => (await other.depth()).dead === 1, 'the dead letter');

    // Act
    failN = -1;
    const [id] = await other.deadLetterIds();
    const redriven = await other.redrive(id!);
    for (let n = 3; n <= 5; n++) await other.send({ n });
    await until(() => seen.length === 5, 'the redriven message and later sends');

    // Assess
    expect(redriven).toBe(true);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(await consumer.depth()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
  });

  it('after a crash, builds its index from disk: ready messages, a dead owner’s lease and an orphaned send', async () => {
    // Prepare: what a killed process leaves.
    const before = open();
    for (let n = 0; n < 3; n++) await before.send({ n });
    const [first] = (await readdir(join(dir, 'ready'))).sort();
    const seq = first!.split('.')[0]!;
    await rename(
      join(dir, 'ready', first!),
      join(dir, 'inflight', `${seq}.1.${time.nowMs() + 3_600_000}.999999999-dead.msg`),
    );
    // An id later than any this process hands out, so it comes last.
    const orphanSeq = '999999999999999-00000001-abcdef';
    const orphan = join(dir, 'tmp', `${orphanSeq}.0.${time.nowMs()}.msg`);
    await writeFile(
      orphan,
      JSON.stringify({ v: 1, id: orphanSeq, sentAt: time.now().toISOString(), body: { n: 9 } }),
    );
    await link(orphan, join(dir, 'dedupe', 'e'.repeat(64)));
    const old = new Date(time.nowMs() - 120_000);
    await utimes(orphan, old, old);
    const seen: Array<{ n: number; attempt: number }> = [];

    // Act
    const after = open();
    after.start(async (b, meta) => {
      seen.push({ n: b.n, attempt: meta.attempt });
    });
    await until(() => seen.length === 4, 'four messages');

    // Assess
    expect(seen).toEqual([
      { n: 0, attempt: 2 },
      { n: 1, attempt: 1 },
      { n: 2, attempt: 1 },
      { n: 9, attempt: 1 },
    ]);
  });
});
