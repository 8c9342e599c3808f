import { link, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskQueue, type DiskQueueOptions } from '../../../shared/adapters/local/disk-queue.ts';
import { WasmMirrorError } from '../../../shared/core/errors.ts';
import type { DeliveryMeta, QueueProducer } from '../../../shared/core/ports.ts';
import { describeQueueContract, type TestMessage, waitFor } from '../../contract/queue.contract.ts';

const fast = { pollIntervalMs: 20, backoffBaseMs: 20, backoffMaxMs: 200 } satisfies Partial<DiskQueueOptions>;

async function makeDiskQueue(options: { maxAttempts: number }, batch: boolean) {
  const dir = await mkdtemp(join(tmpdir(), 'wm-queue-'));
  const queue = new DiskQueue<TestMessage>({ dir, ...fast, maxAttempts: options.maxAttempts });
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
  };
}

describeQueueContract('DiskQueue (single consumer)', (o) => makeDiskQueue(o, false));
describeQueueContract('DiskQueue (batch consumer)', (o) => makeDiskQueue(o, true));

// Compile-time check that the adapter keeps to the port.
new DiskQueue<TestMessage>({ dir: '/nonexistent' }) satisfies QueueProducer<TestMessage>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DiskQueue', () => {
  let dir: string;
  const queues: DiskQueue<TestMessage>[] = [];
  const open = (options: Partial<DiskQueueOptions> = {}) => {
    const q = new DiskQueue<TestMessage>({ dir, ...fast, ...options });
    queues.push(q);
    return q;
  };
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'wm-queue-'));
  });
  afterEach(async () => {
    for (const q of queues.splice(0)) await q.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps sent messages on disk until a consumer takes them (a new instance sees them)', async () => {
    const producer = open();
    for (let n = 0; n < 3; n++) await producer.send({ n });
    expect(await producer.depth()).toEqual({ ready: 3, inFlight: 0, delayed: 0, dead: 0 });
    const consumer = open();
    const seen: number[] = [];
    consumer.start(async (b) => {
      seen.push(b.n);
    });
    await waitFor(() => seen.length === 3, 5000);
    expect(seen).toEqual([0, 1, 2]);
    await waitFor(async () => (await consumer.depth()).inFlight === 0, 5000);
    expect(await consumer.depth()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
  });

  it('runs up to `concurrency` handlers at once', async () => {
    const q = open();
    // All messages are ready before the consumer starts, so slow sends cannot starve it.
    for (let n = 0; n < 9; n++) await q.send({ n });
    let running = 0;
    let peak = 0;
    let done = 0;
    let full: () => void = () => {};
    const filled = new Promise<void>((r) => {
      full = r;
    });
    q.start(
      async () => {
        running++;
        peak = Math.max(peak, running);
        if (running === 3) full();
        // Hold every slot until three run at once, then a little longer so a fourth would show.
        await filled;
        await sleep(50);
        running--;
        done++;
      },
      { concurrency: 3 },
    );
    await waitFor(() => done === 9, 5000, 'nine handled messages');
    expect(peak).toBe(3);
  });

  it('coalesces messages that arrive together into one batch call, FIFO, one call at a time', async () => {
    const q = open();
    for (let n = 0; n < 25; n++) await q.send({ n });
    const calls: number[][] = [];
    let inCall = false;
    let overlapped = false;
    q.startBatch(
      async (bodies) => {
        if (inCall) overlapped = true;
        inCall = true;
        await sleep(10);
        calls.push(bodies.map((b) => b.n));
        inCall = false;
      },
      { maxBatch: 10 },
    );
    await waitFor(() => calls.flat().length === 25, 5000);
    expect(calls.map((c) => c.length)).toEqual([10, 10, 5]);
    expect(calls.flat()).toEqual(Array.from({ length: 25 }, (_, n) => n));
    expect(overlapped).toBe(false);
  });

  it('batches what arrives while the previous batch runs, and waits batchWindowMs for more', async () => {
    const q = open();
    const calls: number[][] = [];
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    q.startBatch(
      async (bodies) => {
        calls.push(bodies.map((b) => b.n));
        if (calls.length === 1) await gate;
      },
      { maxBatch: 100, batchWindowMs: 30 },
    );
    await q.send({ n: 0 });
    await waitFor(() => calls.length === 1, 5000);
    for (let n = 1; n <= 20; n++) await q.send({ n });
    release();
    await waitFor(() => calls.flat().length === 21, 5000);
    expect(calls).toEqual([[0], Array.from({ length: 20 }, (_, i) => i + 1)]);
  });

  it('batch consumer: a failed batch is retried whole and holds back later messages (FIFO)', async () => {
    const q = open({ backoffBaseMs: 100, backoffMaxMs: 100 });
    const calls: Array<{ ns: number[]; attempts: number[] }> = [];
    let sentMore: () => void = () => {};
    const moreSent = new Promise<void>((r) => {
      sentMore = r;
    });
    q.startBatch(
      async (bodies, metas) => {
        calls.push({ ns: bodies.map((b) => b.n), attempts: metas.map((m) => m.attempt) });
        if (calls.length === 1) {
          // Fail only once 2 and 3 are queued, so the retry sees them whatever the sends cost.
          await moreSent;
          throw new Error('signing failed');
        }
      },
      { maxBatch: 2 },
    );
    await q.send({ n: 1 });
    await waitFor(() => calls.length === 1, 5000);
    await q.send({ n: 2 });
    await q.send({ n: 3 });
    sentMore();
    await waitFor(() => calls.flatMap((c) => c.ns).length >= 4, 5000);
    expect(calls.map((c) => c.ns)).toEqual([[1], [1, 2], [3]]);
    expect(calls[1]?.attempts).toEqual([2, 1]);
  });

  it('refuses a second consumer on the same instance', () => {
    const q = open();
    q.start(async () => {});
    expect(() => q.startBatch(async () => {})).toThrow(/already has a consumer/);
  });

  it('backs off exponentially between attempts and counts delayed messages', async () => {
    const q = open({ backoffBaseMs: 200, backoffMaxMs: 10_000, random: () => 1 });
    const at: number[] = [];
    q.start(async () => {
      at.push(Date.now());
      throw new Error('nope');
    });
    await q.send({ n: 1 });
    await waitFor(() => at.length === 1, 5000);
    await waitFor(async () => (await q.depth()).delayed === 1, 5000);
    await waitFor(() => at.length === 3, 5000);
    const first = at[1]! - at[0]!;
    const second = at[2]! - at[1]!;
    expect(first).toBeGreaterThanOrEqual(190);
    expect(second).toBeGreaterThanOrEqual(390);
  });

  it('honours retryAfterSeconds from a WasmMirrorError when it is longer than the backoff', async () => {
    const q = open({ backoffBaseMs: 10, backoffMaxMs: 5000 });
    const at: number[] = [];
    q.start(async () => {
      at.push(Date.now());
      if (at.length === 1)
        throw new WasmMirrorError('TOO_MANY_REQUESTS', 'slow down', { retryAfterSeconds: 0.5 });
    });
    await q.send({ n: 1 });
    await waitFor(() => at.length === 2, 5000);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(490);
  });

  it('lists dead letters with their last error, and redrives one', async () => {
    const q = open({ maxAttempts: 2 });
    let fail = true;
    const ok: DeliveryMeta[] = [];
    q.start(async (_b, meta) => {
      if (fail) throw new WasmMirrorError('REGISTRY_UNAVAILABLE', `down at attempt ${meta.attempt}`);
      ok.push(meta);
    });
    await q.send({ n: 7 }, { dedupeId: 'job-7' });
    await waitFor(async () => (await q.depth()).dead === 1, 5000);
    const [dead] = await q.listDead();
    expect(dead).toMatchObject({
      body: { n: 7 },
      attempts: 2,
      dedupeId: 'job-7',
      lastError: { code: 'REGISTRY_UNAVAILABLE', message: 'down at attempt 2' },
    });
    expect(Date.parse(dead!.deadAt)).not.toBeNaN();

    fail = false;
    expect(await q.redrive(dead!.messageId)).toBe(true);
    expect(await q.redrive(dead!.messageId)).toBe(false);
    await waitFor(() => ok.length === 1, 5000);
    expect(ok[0]).toEqual({ messageId: dead!.messageId, attempt: 1 });
    expect(await q.listDead()).toEqual([]);
  });

  it('plain errors are dead-lettered with code INTERNAL; deleteDead removes them', async () => {
    const q = open({ maxAttempts: 1 });
    q.start(async () => {
      throw new TypeError('boom');
    });
    await q.send({ n: 1 });
    await waitFor(async () => (await q.depth()).dead === 1, 5000);
    const [dead] = await q.listDead();
    expect(dead?.lastError).toEqual({ code: 'INTERNAL', message: 'boom' });
    expect(await q.deleteDead(dead!.messageId)).toBe(true);
    expect(await q.deleteDead(dead!.messageId)).toBe(false);
    expect((await q.depth()).dead).toBe(0);
  });

  it('remembers dedupe ids on disk across instances, and forgets them after the window', async () => {
    await open({ dedupeWindowMs: 60_000 }).send({ n: 1 }, { dedupeId: 'evt-1' });
    await open({ dedupeWindowMs: 60_000 }).send({ n: 2 }, { dedupeId: 'evt-1' });
    expect((await open().depth()).ready).toBe(1);

    const short = open({ dedupeWindowMs: 100 });
    await short.send({ n: 3 }, { dedupeId: 'evt-2' });
    await sleep(150);
    await short.send({ n: 4 }, { dedupeId: 'evt-2' });
    expect((await short.depth()).ready).toBe(3);
  });

  it('dedupe holds under concurrent sends', async () => {
    const q = open();
    await Promise.all(Array.from({ length: 20 }, (_, n) => q.send({ n }, { dedupeId: 'same' })));
    expect((await q.depth()).ready).toBe(1);
  });

  it('redelivers a message whose handler outlives the visibility timeout', async () => {
    const q = open({ visibilityTimeoutMs: 100 });
    const attempts: number[] = [];
    q.start(
      async (_b, meta) => {
        attempts.push(meta.attempt);
        if (meta.attempt === 1) await sleep(400);
      },
      { concurrency: 2 },
    );
    await q.send({ n: 1 });
    await waitFor(() => attempts.length === 2, 5000);
    expect(attempts).toEqual([1, 2]);
  });

  it('takes back at once a lease whose owner process is gone, counting the attempt', async () => {
    const first = open();
    await first.send({ n: 1 });
    const seq = (await readdir(join(dir, 'ready')))[0]!.split('.')[0]!;
    // As a consumer that died mid-delivery leaves it: leased far into the future by an owner that no longer exists.
    const { rename } = await import('node:fs/promises');
    await rename(
      join(dir, 'ready', (await readdir(join(dir, 'ready')))[0]!),
      join(dir, 'inflight', `${seq}.1.${Date.now() + 3_600_000}.${process.pid}-deadbeef.msg`),
    );
    expect(await first.depth()).toMatchObject({ ready: 0, inFlight: 1 });
    const seen: DeliveryMeta[] = [];
    const second = open();
    second.start(async (_b, meta) => {
      seen.push(meta);
    });
    await waitFor(() => seen.length === 1, 5000);
    expect(seen[0]).toEqual({ messageId: seq, attempt: 2 });
  });

  it('dead-letters a message whose deliveries keep dying with their consumer', async () => {
    const q = open({ maxAttempts: 2 });
    await q.send({ n: 1 });
    const name = (await readdir(join(dir, 'ready')))[0]!;
    const seq = name.split('.')[0]!;
    const { rename } = await import('node:fs/promises');
    await rename(
      join(dir, 'ready', name),
      join(dir, 'inflight', `${seq}.2.${Date.now() + 60_000}.999999999-x.msg`),
    );
    await q.recover();
    const [dead] = await q.listDead();
    expect(dead?.lastError.code).toBe('QUEUE_FAILURE');
    expect(dead?.body).toEqual({ n: 1 });
    expect((await q.depth()).inFlight).toBe(0);
  });

  it('finishes a send whose sender died after claiming the dedupe id', async () => {
    const q = open();
    await q.init();
    const seq = `${String(Date.now()).padStart(15, '0')}-00000001-abcdef`;
    const name = `${seq}.0.${Date.now()}.msg`;
    const tmp = join(dir, 'tmp', name);
    await writeFile(
      tmp,
      JSON.stringify({ v: 1, id: seq, sentAt: new Date().toISOString(), body: { n: 42 } }),
    );
    await link(tmp, join(dir, 'dedupe', 'f'.repeat(64)));
    await writeFile(join(dir, 'tmp', 'orphan-without-claim.msg'), 'x');
    const old = new Date(Date.now() - 120_000);
    await utimes(tmp, old, old);
    await utimes(join(dir, 'tmp', 'orphan-without-claim.msg'), old, old);
    await q.recover();
    expect(await readdir(join(dir, 'ready'))).toEqual([name]);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('ignores foreign files and refuses bodies that are not JSON', async () => {
    const q = open();
    await q.init();
    await writeFile(join(dir, 'ready', 'README'), 'not a message');
    expect((await q.depth()).ready).toBe(0);
    await expect(q.send(undefined as unknown as TestMessage)).rejects.toMatchObject({
      code: 'QUEUE_FAILURE',
    });
  });

  it('a delayed message does not hold back the batch consumer', async () => {
    const q = open();
    const seen: number[] = [];
    await q.send({ n: 1 }, { delaySeconds: 30 });
    await q.send({ n: 2 });
    q.startBatch(async (bodies) => {
      seen.push(...bodies.map((b) => b.n));
    });
    await waitFor(() => seen.length === 1, 5000);
    expect(seen).toEqual([2]);
    expect((await q.depth()).delayed).toBe(1);
  });
});
