import { link, mkdtemp, readdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskQueue, type DiskQueueOptions } from '../../../shared/adapters/local/disk-queue.ts';
import { WasmMirrorError } from '../../../shared/core/errors.ts';
import type { DeliveryMeta, QueueProducer } from '../../../shared/core/ports.ts';
import { describeQueueContract, type TestMessage, waitFor } from '../../contract/queue.contract.ts';
import { ManualTime } from './fixtures/manual-time.ts';

const fast = { pollIntervalMs: 20, backoffBaseMs: 20, backoffMaxMs: 200 } satisfies Partial<DiskQueueOptions>;

async function makeDiskQueue(options: { maxAttempts: number }, batch: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'wm-queue-'));
  const time = new ManualTime();
  const queue = new DiskQueue<TestMessage>({
    dir,
    ...fast,
    maxAttempts: options.maxAttempts,
    clock: time,
    scheduler: time,
  });
  return {
    producer: queue,
    consume(handler: (body: TestMessage, meta: DeliveryMeta) => Promise<void>) {
      if (!batch) return queue.start(handler);
      queue.startBatch(async (bodies, metas) => {
        for (const [i, body] of bodies.entries()) await handler(body, metas[i]!);
      });
    },
    stop: () => queue.stop(),
    deadLetters: async () =>
      (await queue.listDead()).map((d) => ({ body: d.body, errorCode: d.lastError.code })),
    cleanup: () => rm(dir, { recursive: true, force: true }),
    time,
  };
}

describeQueueContract('DiskQueue (single consumer)', (o) => makeDiskQueue(o, false));
describeQueueContract('DiskQueue (batch consumer)', (o) => makeDiskQueue(o, true));

// Compile-time check that the adapter keeps to the port.
new DiskQueue<TestMessage>({ dir: '/nonexistent' }) satisfies QueueProducer<TestMessage>;

/** A promise the test resolves when it chooses, to hold a handler where it is. */
function gate(): { opened: Promise<void>; open: () => void } {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { opened, open };
}

describe('DiskQueue', () => {
  let dir: string;
  let time: ManualTime;
  const queues: DiskQueue<TestMessage>[] = [];
  const open = (options: Partial<DiskQueueOptions> = {}) => {
    const q = new DiskQueue<TestMessage>({ dir, ...fast, clock: time, scheduler: time, ...options });
    queues.push(q);
    return q;
  };
  /** Waits for `predicate`, moving the queue's time on from one of its timers to the next meanwhile. */
  const until = (predicate: () => boolean | Promise<boolean>, what?: string) =>
    waitFor(predicate, 5000, what, time);
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wm-queue-'));
    time = new ManualTime();
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps sent messages on disk until a consumer takes them (a new instance sees them)', async () => {
    // Prepare
    const producer = open();
    for (let n = 0; n < 3; n++) await producer.send({ n });
    expect(await producer.depth()).toEqual({ ready: 3, inFlight: 0, delayed: 0, dead: 0 });
    const consumer = open();
    const seen: number[] = [];

    // Act
    consumer.start(async (b) => {
      seen.push(b.n);
    });
    await until(() => seen.length === 3);

    // Assess
    expect(seen).toEqual([0, 1, 2]);
    await until(async () => (await consumer.depth()).inFlight === 0);
    expect(await consumer.depth()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
  });

  it('runs up to `concurrency` handlers at once', async () => {
    // Prepare
    const q = open();
    // All messages are ready before the consumer starts, so slow sends cannot starve it.
    for (let n = 0; n < 9; n++) await q.send({ n });
    let running = 0;
    let peak = 0;
    let done = 0;
    const held = gate();

    // Act
    q.start(
      async () => {
        running++;
        peak = Math.max(peak, running);
        await held.opened;
        running--;
        done++;
      },
      { concurrency: 3 },
    );
    await until(() => running === 3, 'three running handlers');
    // Every slot stays taken for a few polls, so a fourth handler would show.
    await time.advance(3 * fast.pollIntervalMs);
    const peakWhileFull = peak;
    held.open();
    await until(() => done === 9, 'nine handled messages');

    // Assess
    expect(peakWhileFull).toBe(3);
    expect(peak).toBe(3);
  });

  it('coalesces messages that arrive together into one batch call, FIFO, one call at a time', async () => {
    // Prepare
    const q = open();
    for (let n = 0; n < 25; n++) await q.send({ n });
    const calls: number[][] = [];
    let inCall = false;
    let overlapped = false;

    // Act
    q.startBatch(
      async (bodies) => {
        if (inCall) overlapped = true;
        inCall = true;
        // Give an overlapping call the chance to start.
        await new Promise((r) => setImmediate(r));
        calls.push(bodies.map((b) => b.n));
        inCall = false;
      },
      { maxBatch: 10 },
    );
    await until(() => calls.flat().length === 25);

    // Assess
    expect(calls.map((c) => c.length)).toEqual([10, 10, 5]);
    expect(calls.flat()).toEqual(Array.from({ length: 25 }, (_, n) => n));
    expect(overlapped).toBe(false);
  });

  it('batches what arrives while the previous batch runs', async () => {
    // Prepare
    const q = open();
    const calls: number[][] = [];
    const held = gate();
    q.startBatch(
      async (bodies) => {
        calls.push(bodies.map((b) => b.n));
        if (calls.length === 1) await held.opened;
      },
      { maxBatch: 100, batchWindowMs: 30 },
    );
    await q.send({ n: 0 });
    await until(() => calls.length === 1);

    // Act
    for (let n = 1; n <= 20; n++) await q.send({ n });
    held.open();
    await until(() => calls.flat().length === 21);

    // Assess
    expect(calls).toEqual([[0], Array.from({ length: 20 }, (_, i) => i + 1)]);
  });

  it('waits batchWindowMs after the first message of a batch for more', async () => {
    // Prepare
    const q = open();
    const calls: number[][] = [];
    q.startBatch(
      async (bodies) => {
        calls.push(bodies.map((b) => b.n));
      },
      { maxBatch: 100, batchWindowMs: 30 },
    );
    await q.send({ n: 0 });
    await waitFor(async () => (await q.depth()).inFlight === 1, 5000, 'the first message claimed');

    // Act
    await q.send({ n: 1 });
    await time.advance(30);
    await until(() => calls.length === 1);

    // Assess
    expect(calls).toEqual([[0, 1]]);
  });

  it('batch consumer: a failed batch is retried whole and holds back later messages (FIFO)', async () => {
    // Prepare
    const q = open({ backoffBaseMs: 100, backoffMaxMs: 100 });
    const calls: Array<{ ns: number[]; attempts: number[] }> = [];
    const moreSent = gate();
    q.startBatch(
      async (bodies, metas) => {
        calls.push({ ns: bodies.map((b) => b.n), attempts: metas.map((m) => m.attempt) });
        if (calls.length === 1) {
          // Fail only once 2 and 3 are queued, so the retry sees them whatever the sends cost.
          await moreSent.opened;
          throw new Error('signing failed');
        }
      },
      { maxBatch: 2 },
    );

    // Act
    await q.send({ n: 1 });
    await until(() => calls.length === 1);
    await q.send({ n: 2 });
    await q.send({ n: 3 });
    moreSent.open();
    await until(() => calls.flatMap((c) => c.ns).length >= 4);

    // Assess
    expect(calls.map((c) => c.ns)).toEqual([[1], [1, 2], [3]]);
    expect(calls[1]?.attempts).toEqual([2, 1]);
  });

  it('refuses a second consumer on the same instance', () => {
    // Prepare
    const q = open();

    // Act
    q.start(async () => {});

    // Assess
    expect(() => q.startBatch(async () => {})).toThrow(/already has a consumer/);
  });

  it('backs off exponentially between attempts and counts delayed messages', async () => {
    // Prepare
    const q = open({ backoffBaseMs: 200, backoffMaxMs: 10_000, random: () => 1 });
    const at: number[] = [];
    q.start(async () => {
      at.push(time.nowMs());
      throw new Error('nope');
    });

    // Act
    await q.send({ n: 1 });
    await until(() => at.length === 1);
    await until(async () => (await q.depth()).delayed === 1);
    await until(() => at.length === 3);

    // Assess
    const first = at[1]! - at[0]!;
    const second = at[2]! - at[1]!;
    expect(first).toBeGreaterThanOrEqual(200);
    expect(first).toBeLessThanOrEqual(200 + fast.pollIntervalMs);
    expect(second).toBeGreaterThanOrEqual(400);
    expect(second).toBeLessThanOrEqual(400 + fast.pollIntervalMs);
  });

  it('honours retryAfterSeconds from a WasmMirrorError when it is longer than the backoff', async () => {
    // Prepare
    const q = open({ backoffBaseMs: 10, backoffMaxMs: 5000 });
    const at: number[] = [];
    q.start(async () => {
      at.push(time.nowMs());
      if (at.length === 1)
        throw new WasmMirrorError('TOO_MANY_REQUESTS', 'slow down', { retryAfterSeconds: 0.5 });
    });

    // Act
    await q.send({ n: 1 });
    await until(() => at.length === 2);

    // Assess
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(500);
    expect(at[1]! - at[0]!).toBeLessThanOrEqual(500 + fast.pollIntervalMs);
  });

  it('lists dead letters with their last error, and redrives one', async () => {
    // Prepare
    const q = open({ maxAttempts: 2 });
    let fail = true;
    const ok: DeliveryMeta[] = [];
    q.start(async (_b, meta) => {
      if (fail) throw new WasmMirrorError('REGISTRY_UNAVAILABLE', `down at attempt ${meta.attempt}`);
      ok.push(meta);
    });
    await q.send({ n: 7 }, { dedupeId: 'job-7' });
    await until(async () => (await q.depth()).dead === 1);

    // Act
    const [dead] = await q.listDead();
    fail = false;
    const redriven = await q.redrive(dead!.messageId);
    const redrivenAgain = await q.redrive(dead!.messageId);
    await until(() => ok.length === 1);

    // Assess
    expect(dead).toMatchObject({
      body: { n: 7 },
      attempts: 2,
      dedupeId: 'job-7',
      lastError: { code: 'REGISTRY_UNAVAILABLE', message: 'down at attempt 2' },
    });
    expect(Date.parse(dead!.deadAt)).not.toBeNaN();
    expect(redriven).toBe(true);
    expect(redrivenAgain).toBe(false);
    expect(ok[0]).toEqual({ messageId: dead!.messageId, attempt: 1 });
    expect(await q.listDead()).toEqual([]);
  });

  it('plain errors are dead-lettered with code INTERNAL; deleteDead removes them', async () => {
    // Prepare
    const q = open({ maxAttempts: 1 });
    q.start(async () => {
      throw new TypeError('boom');
    });
    await q.send({ n: 1 });
    await until(async () => (await q.depth()).dead === 1);

    // Act
    const [dead] = await q.listDead();
    const deleted = await q.deleteDead(dead!.messageId);
    const deletedAgain = await q.deleteDead(dead!.messageId);

    // Assess
    expect(dead?.lastError).toEqual({ code: 'INTERNAL', message: 'boom' });
    expect(deleted).toBe(true);
    expect(deletedAgain).toBe(false);
    expect((await q.depth()).dead).toBe(0);
  });

  it('remembers dedupe ids on disk across instances, and forgets them after the window', async () => {
    // Prepare
    await open({ dedupeWindowMs: 60_000 }).send({ n: 1 }, { dedupeId: 'evt-1' });
    const short = open({ dedupeWindowMs: 100 });
    await short.send({ n: 3 }, { dedupeId: 'evt-2' });

    // Act
    await open({ dedupeWindowMs: 60_000 }).send({ n: 2 }, { dedupeId: 'evt-1' });
    const readyWithinWindow = (await open().depth()).ready;
    // Dedupe markers carry real file times: move well past the window whatever the sends took.
    await time.advance(10_000);
    await short.send({ n: 4 }, { dedupeId: 'evt-2' });

    // Assess
    expect(readyWithinWindow).toBe(2);
    expect((await short.depth()).ready).toBe(3);
  });

  it('dedupe holds under concurrent sends', async () => {
    // Prepare
    const q = open();

    // Act
    await Promise.all(Array.from({ length: 20 }, (_, n) => q.send({ n }, { dedupeId: 'same' })));

    // Assess
    expect((await q.depth()).ready).toBe(1);
  });

  it('redelivers a message whose handler outlives the visibility timeout', async () => {
    // Prepare
    const q = open({ visibilityTimeoutMs: 100 });
    const attempts: number[] = [];
    const firstHeld = gate();
    q.start(
      async (_b, meta) => {
        attempts.push(meta.attempt);
        if (meta.attempt === 1) await firstHeld.opened;
      },
      { concurrency: 2 },
    );

    // Act
    await q.send({ n: 1 });
    await until(() => attempts.length === 2);
    firstHeld.open();

    // Assess
    expect(attempts).toEqual([1, 2]);
  });

  it('takes back at once a lease whose owner process is gone, counting the attempt', async () => {
    // Prepare
    const first = open();
    await first.send({ n: 1 });
    const [name] = await readdir(join(dir, 'ready'));
    const seq = name!.split('.')[0]!;
    // As a consumer that died mid-delivery leaves it: leased far into the future by an owner that no longer exists.
    await rename(
      join(dir, 'ready', name!),
      join(dir, 'inflight', `${seq}.1.${time.nowMs() + 3_600_000}.${process.pid}-deadbeef.msg`),
    );
    expect(await first.depth()).toMatchObject({ ready: 0, inFlight: 1 });
    const seen: DeliveryMeta[] = [];

    // Act
    open().start(async (_b, meta) => {
      seen.push(meta);
    });
    await until(() => seen.length === 1);

    // Assess
    expect(seen[0]).toEqual({ messageId: seq, attempt: 2 });
  });

  it('dead-letters a message whose deliveries keep dying with their consumer', async () => {
    // Prepare
    const q = open({ maxAttempts: 2 });
    await q.send({ n: 1 });
    const [name] = await readdir(join(dir, 'ready'));
    const seq = name!.split('.')[0]!;
    await rename(
      join(dir, 'ready', name!),
      join(dir, 'inflight', `${seq}.2.${time.nowMs() + 60_000}.999999999-x.msg`),
    );

    // Act
    await q.recover();

    // Assess
    const [dead] = await q.listDead();
    expect(dead?.lastError.code).toBe('QUEUE_FAILURE');
    expect(dead?.body).toEqual({ n: 1 });
    expect((await q.depth()).inFlight).toBe(0);
  });

  it('finishes a send whose sender died after claiming the dedupe id', async () => {
    // Prepare
    const q = open();
    await q.init();
    const seq = `${String(time.nowMs()).padStart(15, '0')}-00000001-abcdef`;
    const name = `${seq}.0.${time.nowMs()}.msg`;
    const tmp = join(dir, 'tmp', name);
    await writeFile(
      tmp,
      JSON.stringify({ v: 1, id: seq, sentAt: time.now().toISOString(), body: { n: 42 } }),
    );
    await link(tmp, join(dir, 'dedupe', 'f'.repeat(64)));
    await writeFile(join(dir, 'tmp', 'orphan-without-claim.msg'), 'x');
    const old = new Date(time.nowMs() - 120_000);
    await utimes(tmp, old, old);
    await utimes(join(dir, 'tmp', 'orphan-without-claim.msg'), old, old);

    // Act
    await q.recover();

    // Assess
    expect(await readdir(join(dir, 'ready'))).toEqual([name]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('ignores foreign files and refuses bodies that are not JSON', async () => {
    // Prepare
    const q = open();
    await q.init();

    // Act
    await writeFile(join(dir, 'ready', 'README'), 'not a message');

    // Assess
    expect((await q.depth()).ready).toBe(0);
    await expect(q.send(undefined as unknown as TestMessage)).rejects.toMatchObject({
      code: 'QUEUE_FAILURE',
    });
  });

  it('a delayed message does not hold back the batch consumer', async () => {
    // Prepare
    const q = open();
    const seen: number[] = [];
    await q.send({ n: 1 }, { delaySeconds: 30 });
    await q.send({ n: 2 });

    // Act
    q.startBatch(async (bodies) => {
      seen.push(...bodies.map((b) => b.n));
    });
    await until(() => seen.length === 1);

    // Assess
    expect(seen).toEqual([2]);
    expect((await q.depth()).delayed).toBe(1);
  });
});
