/**
 * The queue contract: a producer and the consumer the runtime drives (the embedded poller, or a
 * driver that plays the SQS event source mapping). At-least-once delivery of exactly the sent
 * body, dedupe ids honoured, a failing handler retried and then dead-lettered with its error.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type { DeliveryMeta, MessageHandler, QueueProducer } from '../../shared/core/ports.ts';

export type TestMessage = { n: number; text?: string; nested?: { list: unknown[] } };

export interface QueueUnderTest {
  producer: QueueProducer<TestMessage>;
  /** Starts delivering messages to `handler` until `stop`. */
  consume(handler: MessageHandler<TestMessage>): void | Promise<void>;
  stop(): Promise<void>;
  /** Messages that ended in the dead-letter area, with their last error code when the adapter keeps it. */
  deadLetters(): Promise<Array<{ body: TestMessage; errorCode?: string }>>;
  cleanup(): Promise<void>;
  /** The queue's time, when the adapter takes it injected: the contract moves it on instead of waiting. */
  time?: TestTime;
}

/** Time a test moves on by hand; the queue reads it and sets its timers on it. */
export interface TestTime {
  nowMs(): number;
  /** Moves time on by `ms`, letting the queue act at each moment it asked to be woken at. */
  advance(ms: number): Promise<void>;
  /** Moves time on to the next moment the queue asked to be woken at, if it waits for one, and lets it act. */
  tick(): Promise<void>;
}

export interface QueueContractSettings {
  /** How long a test waits for deliveries; emulators with coarse timers need more. @default 10 s */
  waitMs?: number;
  /** Whether `deadLetters()` reports the last error code; when it does, the code is checked. @default true */
  keepsErrorCode?: boolean;
}

/**
 * Waits until `predicate` holds, checking it again each time the queue may have moved: after each
 * tick of `time` when given, otherwise every 10 ms. `timeoutMs` is real time either way.
 */
export async function waitFor(
  predicate: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what = 'condition',
  time?: TestTime,
) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    if (time === undefined) await sleep(10);
    else await time.tick();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function describeQueueContract(
  name: string,
  makeQueue: (options: { maxAttempts: number }) => Promise<QueueUnderTest>,
  settings: QueueContractSettings = {},
): void {
  const waitMs = settings.waitMs ?? 10_000;
  const keepsErrorCode = settings.keepsErrorCode ?? true;

  describe(`Queue contract: ${name}`, () => {
    let subject: QueueUnderTest | undefined;
    const open = async (maxAttempts: number) => {
      subject = await makeQueue({ maxAttempts });
      return subject;
    };
    /** The queue's time: its own clock when injected, else the real one. */
    const now = () => subject?.time?.nowMs() ?? Date.now();
    /** Lets `ms` of the queue's time pass. */
    const elapse = (ms: number) => (subject?.time === undefined ? sleep(ms) : subject.time.advance(ms));
    const until = (predicate: () => boolean | Promise<boolean>, what: string) =>
      waitFor(predicate, waitMs, what, subject?.time);
    afterEach(async () => {
      await subject?.stop();
      await subject?.cleanup();
      subject = undefined;
    });

    it('delivers exactly the body that was sent, first attempt 1', async () => {
      // Prepare
      const q = await open(3);
      const body: TestMessage = {
        n: 1,
        text: 'héllo "quoted"\n',
        nested: { list: [1, 'two', null, { three: true }] },
      };
      const seen: Array<{ body: TestMessage; meta: DeliveryMeta }> = [];
      await q.consume(async (b, meta) => {
        seen.push({ body: b, meta });
      });

      // Act
      await q.producer.send(body);
      await until(() => seen.length === 1, 'delivery');

      // Assess
      expect(seen[0]?.body).toEqual(body);
      expect(seen[0]?.meta.attempt).toBe(1);
      expect(seen[0]?.meta.messageId).toEqual(expect.any(String));
      expect(seen[0]?.meta.messageId.length).toBeGreaterThan(0);
    });

    it('delivers every message of a burst at least once', async () => {
      // Prepare
      const q = await open(3);
      const seen = new Set<number>();
      await q.consume(async (b) => {
        seen.add(b.n);
      });

      // Act
      await Promise.all(Array.from({ length: 50 }, (_, n) => q.producer.send({ n })));

      // Assess
      await until(() => seen.size === 50, '50 deliveries');
    });

    it('drops a message whose dedupe id was already sent', async () => {
      // Prepare
      const q = await open(3);
      const seen: number[] = [];
      await q.consume(async (b) => {
        seen.push(b.n);
      });

      // Act
      await q.producer.send({ n: 1 }, { dedupeId: 'delivery-a' });
      await q.producer.send({ n: 2 }, { dedupeId: 'delivery-a' });
      await q.producer.send({ n: 3 }, { dedupeId: 'delivery-b' });
      // Wait for the message sent after the duplicate, not just for any two deliveries.
      await until(() => seen.includes(1) && seen.includes(3), 'deliveries 1 and 3');
      // Time for a late delivery of the duplicate to show.
      await elapse(300);

      // Assess
      expect(seen.sort()).toEqual([1, 3]);
    });

    it('redelivers after a handler failure, with the attempt counted', async () => {
      // Prepare
      const q = await open(3);
      const attempts: number[] = [];
      let done = false;
      await q.consume(async (_b, meta) => {
        attempts.push(meta.attempt);
        if (meta.attempt === 1)
          throw new WasmMirrorError('REGISTRY_UNAVAILABLE', 'registry down', { retryable: true });
        done = true;
      });

      // Act
      await q.producer.send({ n: 1 });
      await until(() => done, 'a successful retry');

      // Assess
      expect(attempts).toEqual([1, 2]);
      expect(await q.deadLetters()).toEqual([]);
    });

    it('dead-letters after maxAttempts failed deliveries, with the last error', async () => {
      // Prepare
      const q = await open(2);
      const attempts: number[] = [];
      await q.consume(async (b, meta) => {
        if (b.n === 1) {
          attempts.push(meta.attempt);
          throw new WasmMirrorError('REGISTRY_UNAVAILABLE', `still down (attempt ${meta.attempt})`);
        }
      });

      // Act
      await q.producer.send({ n: 1, text: 'poison' });
      await until(async () => (await q.deadLetters()).length === 1, 'a dead letter');

      // Assess
      const [dead] = await q.deadLetters();
      expect(dead?.body).toEqual({ n: 1, text: 'poison' });
      expect(dead?.errorCode).toBe(keepsErrorCode ? 'REGISTRY_UNAVAILABLE' : undefined);
      expect(attempts).toEqual([1, 2]);
      // Time for a delivery after the dead-lettering to show.
      await elapse(300);
      expect(attempts).toEqual([1, 2]);
    });

    it('holds a delayed message back until its delay has passed', async () => {
      // Prepare
      const q = await open(3);
      const deliveredAt: number[] = [];
      await q.consume(async () => {
        deliveredAt.push(now());
      });

      // Act
      const sentAt = now();
      await q.producer.send({ n: 1 }, { delaySeconds: 1 });
      await until(() => deliveredAt.length === 1, 'the delayed delivery');

      // Assess
      expect(deliveredAt[0]! - sentAt).toBeGreaterThanOrEqual(950);
    });
  });
}
