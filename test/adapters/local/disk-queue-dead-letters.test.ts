/**
 * The disk queue's dead-letter area under load and over time: dead letters expire after the
 * configured retention (swept when a consumer starts and periodically), pages are read without
 * reading every dead letter, and redrives are safe when two run at once or one dies half-way.
 */
import type * as fsPromises from 'node:fs/promises';
import { mkdtemp, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DiskQueue, type DiskQueueOptions } from '../../../shared/adapters/local/disk-queue.ts';
import { waitFor } from '../../contract/queue.contract.ts';
import { ManualTime } from './fixtures/manual-time.ts';

const reads = vi.hoisted(() => ({ dead: 0 }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof fsPromises>();
  const readFileCounted = ((path: Parameters<typeof actual.readFile>[0], ...rest: unknown[]) => {
    if (basename(dirname(String(path))) === 'dead') reads.dead++;
    return (actual.readFile as (...args: unknown[]) => unknown)(path, ...rest);
  }) as typeof actual.readFile;
  return { ...actual, readFile: readFileCounted };
});

type Msg = { n: number };

const DAY = 24 * 3600_000;
const fast = { pollIntervalMs: 20, backoffBaseMs: 20, backoffMaxMs: 200 } satisfies Partial<DiskQueueOptions>;

describe('DiskQueue dead letters', () => {
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
  /** Sends `count` messages that all fail on their only delivery; returns once all are dead. */
  const makeDeadLetters = async (count: number, options: Partial<DiskQueueOptions> = {}) => {
    const q = open({ maxAttempts: 1, ...options });
    for (let n = 0; n < count; n++) await q.send({ n });
    q.start(async () => {
      throw new Error('always fails');
    });
    await until(async () => (await q.depth()).dead === count, `${count} dead letters`);
    await q.stop();
    return q;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wm-queue-dead-'));
    time = new ManualTime();
    reads.dead = 0;
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('expires dead letters after the configured retention, swept while consuming', async () => {
    // Prepare: three dead letters, two of them 40 s old and one 5 s old (their mtime is their death).
    const q = await makeDeadLetters(3);
    const [a, b, c] = await q.deadLetterIds();
    const at = (ageMs: number) => new Date(time.nowMs() - ageMs);
    for (const id of [a, b]) await utimes(join(dir, 'dead', `${id}.json`), at(40_000), at(40_000));
    await utimes(join(dir, 'dead', `${c}.json`), at(5_000), at(5_000));
    const consumer = open({ deadLetterRetentionMs: 45_000 });

    // Act: the sweep at start finds none older than 45 s; housekeeping 30 s later finds two.
    consumer.start(async () => {});
    await time.advance(1_000);
    const afterStart = (await q.depth()).dead;
    await time.advance(30_000);
    await until(async () => (await q.depth()).dead === 1, 'the two older ones to expire');

    // Assess
    expect(afterStart).toBe(3);
    expect(await q.deadLetterIds()).toEqual([c]);
  });

  it('keeps dead letters 14 days by default, and sweeps older ones when a consumer starts', async () => {
    // Prepare
    const q = await makeDeadLetters(3);
    const [oldest, middle] = (await readdir(join(dir, 'dead'))).sort();
    const fifteenDaysAgo = new Date(time.nowMs() - 15 * DAY);
    const thirteenDaysAgo = new Date(time.nowMs() - 13 * DAY);
    await utimes(join(dir, 'dead', oldest!), fifteenDaysAgo, fifteenDaysAgo);
    await utimes(join(dir, 'dead', middle!), thirteenDaysAgo, thirteenDaysAgo);

    // Act
    const restarted = open();
    restarted.start(async () => {});
    await until(async () => (await q.depth()).dead === 2, 'the 15-day-old dead letter to go');

    // Assess
    expect((await q.listDead()).map((d) => d.body)).toEqual([{ n: 1 }, { n: 2 }]);
  });

  it('sets a dead letter file’s mtime to the moment it died', async () => {
    // Prepare
    await time.advance(3_600_000);
    const q = await makeDeadLetters(1);

    // Act
    const [dead] = await q.listDead();
    const st = await stat(join(dir, 'dead', `${dead!.messageId}.json`));

    // Assess
    expect(Math.round(st.mtimeMs)).toBe(Date.parse(dead!.deadAt));
  });

  it('pages through dead letters newest first, reading only the page', async () => {
    // Prepare
    const q = await makeDeadLetters(25);
    reads.dead = 0;

    // Act
    const first = await q.listDeadPage({ limit: 10 });
    const readsForOnePage = reads.dead;
    const second = await q.listDeadPage({ limit: 10, before: first.next! });
    const third = await q.listDeadPage({ limit: 10, before: second.next! });

    // Assess
    expect(readsForOnePage).toBe(10);
    expect(first.total).toBe(25);
    expect(first.items.map((d) => d.body.n)).toEqual([24, 23, 22, 21, 20, 19, 18, 17, 16, 15]);
    expect(second.items.map((d) => d.body.n)).toEqual([14, 13, 12, 11, 10, 9, 8, 7, 6, 5]);
    expect(third.items.map((d) => d.body.n)).toEqual([4, 3, 2, 1, 0]);
    expect(third.next).toBeUndefined();
    await expect(q.listDeadPage({ limit: 0 })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(q.listDeadPage({ limit: 5, before: '../x' })).rejects.toMatchObject({ code: 'USAGE' });
  });

  it('a page skips dead letters redriven or deleted since the listing, and ends cleanly', async () => {
    // Prepare
    const q = await makeDeadLetters(4);
    const ids = await q.deadLetterIds();

    // Act
    await q.deleteDead(ids[3]!);
    const page = await q.listDeadPage({ limit: 3 });

    // Assess
    expect(page.total).toBe(3);
    expect(page.items.map((d) => d.messageId)).toEqual([ids[2], ids[1], ids[0]]);
    expect(page.next).toBeUndefined();
  });

  it('of two redrives of one dead letter at once, exactly one puts it back', async () => {
    // Prepare
    const q = await makeDeadLetters(1);
    const [id] = await q.deadLetterIds();
    const other = open();

    // Act
    const results = await Promise.all([q.redrive(id!), other.redrive(id!), q.redrive(id!)]);

    // Assess
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await readdir(join(dir, 'ready'))).toHaveLength(1);
    expect(await q.depth()).toMatchObject({ ready: 1, dead: 0 });
  });

  it('puts back a dead letter whose redrive died half-way', async () => {
    // Prepare: a redrive claimed the dead letter, then its process was killed.
    const q = await makeDeadLetters(1);
    const [id] = await q.deadLetterIds();
    await rename(join(dir, 'dead', `${id}.json`), join(dir, 'dead', `${id}.json.redriving`));
    expect((await q.depth()).dead).toBe(0);

    // Act
    await time.advance(61_000);
    await q.recover();

    // Assess
    expect(await q.deadLetterIds()).toEqual([id]);
    expect(await q.redrive(id!)).toBe(true);
  });

  it('deletes dead letters older than a given age', async () => {
    // Prepare
    const q = await makeDeadLetters(3);
    const [oldest] = (await readdir(join(dir, 'dead'))).sort();
    const twoHoursAgo = new Date(time.nowMs() - 2 * 3600_000);
    await utimes(join(dir, 'dead', oldest!), twoHoursAgo, twoHoursAgo);

    // Act
    const removed = await q.deleteDeadOlderThan(3600_000);

    // Assess
    expect(removed).toBe(1);
    expect((await q.listDead()).map((d) => d.body.n)).toEqual([1, 2]);
  });
});
