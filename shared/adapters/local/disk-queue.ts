/**
 * A durable queue in a directory, with SQS semantics: at-least-once delivery, a visibility
 * timeout, retries with exponential backoff and jitter, a dead-letter area after `maxAttempts`,
 * deduplication ids within a window, and per-message delays. The embedded runtime uses it where
 * AWS uses SQS, and calls the same handlers.
 *
 * One file per message; its state is the directory it sits in and its name (disk-queue/layout.ts).
 * Every state change is one rename(2) of an immutable, fsynced file, so `kill -9` at any instant
 * leaves each message in exactly one state (or, between two steps of a dead-lettering, in two,
 * which recovery resolves). A lease whose owner process is gone is taken back at once; any other
 * lease when it expires.
 *
 * Several processes may send into the same directory (the CLI does while the server consumes);
 * claiming is a rename, so two consumers never hold the same lease either.
 *
 * The parts: sending and dedupe ids (send.ts), claiming (claim.ts), what happens to a lease
 * afterwards (leases.ts), dead letters (dead-letters.ts), the consumer loop (consumer.ts) and its
 * timers (time.ts). Time is read from the injected clock and timers go through the injected
 * scheduler, so tests move time on instead of sleeping.
 */
import { WasmMirrorError } from '../../core/errors.ts';
import type { MessageHandler, QueueProducer, SendOptions } from '../../core/ports.ts';
import { ensureDir } from '../../platform/files.ts';
import { countInflight, countReady } from './disk-queue/claim.ts';
import { Consumer } from './disk-queue/consumer.ts';
import { nowMs, type QueueContext, queueContext } from './disk-queue/context.ts';
import {
  countDead,
  deadLetterIds,
  deleteDead,
  deleteDeadBefore,
  listDead,
  listDeadPage,
  readDead,
  redrive,
  restoreInterruptedRedrives,
} from './disk-queue/dead-letters.ts';
import { describeError, queueError, SEQ } from './disk-queue/layout.ts';
import { reclaim } from './disk-queue/leases.ts';
import { expireDedupeIds, finishOrphanedSends, sendMessage } from './disk-queue/send.ts';
import { Waker } from './disk-queue/time.ts';
import type {
  BatchConsumeOptions,
  BatchHandler,
  ConsumeOptions,
  DeadLetter,
  DeadLetterPage,
  DiskQueueOptions,
  QueueDepth,
} from './disk-queue/types.ts';

export { DEFAULT_DEAD_LETTER_RETENTION_MS } from './disk-queue/context.ts';
export { type Scheduler, systemScheduler } from './disk-queue/time.ts';
export type {
  BatchConsumeOptions,
  BatchHandler,
  ConsumeOptions,
  DeadLetter,
  DeadLetterError,
  DeadLetterPage,
  DiskQueueOptions,
  QueueDepth,
} from './disk-queue/types.ts';

/** Orphaned sends and expired dedupe ids are looked for this often; stale leases on every poll. */
const HOUSEKEEPING_MS = 30_000;
/** Expired dead letters are looked for at most this often (and at least once per tenth of the retention). */
const DEAD_LETTER_SWEEP_MS = 3600_000;

export class DiskQueue<T> implements QueueProducer<T> {
  readonly dir: string;
  readonly name: string;
  private readonly ctx: QueueContext;
  private readonly waker: Waker;
  private readonly consumer: Consumer<T>;
  private initialized: Promise<void> | undefined;
  private lastHousekeeping = 0;
  private lastDeadLetterSweep = 0;
  private deadLetterSweep: Promise<void> | undefined;

  constructor(options: DiskQueueOptions) {
    this.ctx = queueContext(options);
    this.dir = options.dir;
    this.name = this.ctx.name;
    this.waker = new Waker(this.ctx.scheduler, this.ctx.pollIntervalMs);
    this.consumer = new Consumer<T>(this.ctx, this.waker, {
      init: () => this.init(),
      housekeeping: (force) => this.housekeeping(force),
    });
  }

  /** Creates the directories; the other methods call it on first use. */
  static async open<T>(options: DiskQueueOptions): Promise<DiskQueue<T>> {
    const queue = new DiskQueue<T>(options);
    await queue.init();
    return queue;
  }

  init(): Promise<void> {
    this.initialized ??= (async () => {
      for (const dir of Object.values(this.ctx.paths)) await ensureDir(dir);
    })().catch((err) => {
      this.initialized = undefined;
      throw queueError(`queue ${this.name}: create directories`, err);
    });
    return this.initialized;
  }

  // ---------------------------------------------------------------------------------------------
  // Producer

  /** Resolves once the message is durable on disk (or dropped as a duplicate). */
  async send(body: T, options: SendOptions = {}): Promise<void> {
    await this.init();
    if (await sendMessage(this.ctx, body, options)) this.waker.notify();
  }

  // ---------------------------------------------------------------------------------------------
  // Consumers

  /** Delivers messages one by one (up to `concurrency` at once) to `handler`. */
  start(handler: MessageHandler<T>, options: ConsumeOptions = {}): void {
    this.consumer.start(handler, options);
  }

  /**
   * Delivers messages in FIFO order, in batches of up to `maxBatch`, one handler call at a time:
   * whatever arrived while the previous call ran is coalesced into the next. If the handler throws,
   * the whole batch is retried. A message waiting for a retry holds back the ones after it, as in
   * an SQS FIFO message group; a message sent with a delay does not.
   */
  startBatch(handler: BatchHandler<T>, options: BatchConsumeOptions = {}): void {
    this.consumer.startBatch(handler, options);
  }

  /** Stops polling and waits for running handlers to finish. */
  async stop(): Promise<void> {
    await this.consumer.stop();
    await this.deadLetterSweep;
  }

  get consuming(): boolean {
    return this.consumer.consuming;
  }

  // ---------------------------------------------------------------------------------------------
  // Recovery and housekeeping

  /**
   * Takes back leases that expired or whose consumer is gone, finishes sends that a dead sender had
   * already claimed a dedupe id for, forgets dedupe ids older than the window, puts back dead
   * letters whose redrive died, and deletes expired dead letters. Consumers run it when they start
   * and every 30 s (the dead-letter sweep less often); it is safe to run from several processes at
   * once.
   */
  async recover(): Promise<void> {
    await this.init();
    await this.housekeeping(true);
    await this.deadLetterSweep;
  }

  private async housekeeping(force: boolean): Promise<void> {
    const now = nowMs(this.ctx);
    await reclaim(this.ctx, now);
    if (!force && now - this.lastHousekeeping < HOUSEKEEPING_MS) return;
    this.lastHousekeeping = now;
    await finishOrphanedSends(this.ctx, now);
    await expireDedupeIds(this.ctx, now);
    await restoreInterruptedRedrives(this.ctx, now);
    const sweepEvery = Math.min(DEAD_LETTER_SWEEP_MS, Math.max(1000, this.ctx.deadLetterRetentionMs / 10));
    if ((force || now - this.lastDeadLetterSweep >= sweepEvery) && this.deadLetterSweep === undefined) {
      this.lastDeadLetterSweep = now;
      // In the background: a stat per dead letter, and thousands of them must not hold up claims.
      this.deadLetterSweep = this.expireDeadLetters()
        .then(
          () => {},
          (err: unknown) =>
            this.ctx.logger.warn('queue could not expire dead letters', {
              queue: this.name,
              error: describeError(err),
            }),
        )
        .finally(() => {
          this.deadLetterSweep = undefined;
        });
    }
  }

  /** Deletes dead letters older than `deadLetterRetentionMs`; returns how many. */
  async expireDeadLetters(): Promise<number> {
    await this.init();
    return deleteDeadBefore(this.ctx, nowMs(this.ctx) - this.ctx.deadLetterRetentionMs);
  }

  // ---------------------------------------------------------------------------------------------
  // Inspection and dead letters

  async depth(): Promise<QueueDepth> {
    await this.init();
    const { ready, delayed } = await countReady(this.ctx, nowMs(this.ctx));
    return { ready, inFlight: await countInflight(this.ctx), delayed, dead: await countDead(this.ctx) };
  }

  /** Dead letters, oldest first, each with the error of its last delivery. Reads them all: prefer `listDeadPage`. */
  async listDead(): Promise<DeadLetter<T>[]> {
    await this.init();
    return listDead<T>(this.ctx);
  }

  /**
   * Up to `limit` dead letters, newest first (by message id, which starts with the send time),
   * after the cursor `before` (the `next` of the previous page). Reads only that page's files.
   */
  async listDeadPage(options: { limit: number; before?: string }): Promise<DeadLetterPage<T>> {
    if (!Number.isSafeInteger(options.limit) || options.limit < 1) {
      throw new WasmMirrorError('USAGE', 'a page of dead letters needs a positive whole limit');
    }
    if (options.before !== undefined && !SEQ.test(options.before)) {
      throw new WasmMirrorError('USAGE', `cursor ${JSON.stringify(options.before)} is not a message id`);
    }
    await this.init();
    return listDeadPage<T>(this.ctx, options);
  }

  /** One dead letter by message id, or undefined. */
  async getDead(messageId: string): Promise<DeadLetter<T> | undefined> {
    await this.init();
    return readDead<T>(this.ctx, messageId);
  }

  /** Message ids of the dead letters, oldest first, without reading them. */
  async deadLetterIds(): Promise<string[]> {
    await this.init();
    return deadLetterIds(this.ctx);
  }

  /**
   * Puts a dead letter back on the queue with a fresh attempt count. False if there is no such
   * dead letter. A consumer in another process finds it on its next poll.
   */
  async redrive(messageId: string): Promise<boolean> {
    await this.init();
    const redriven = await redrive<T>(this.ctx, messageId);
    if (redriven) this.waker.notify();
    return redriven;
  }

  /** Redrives every dead letter; returns how many. */
  async redriveAll(): Promise<number> {
    let n = 0;
    for (const id of await this.deadLetterIds()) if (await this.redrive(id)) n++;
    return n;
  }

  /** Deletes a dead letter for good. False if there is no such dead letter. */
  async deleteDead(messageId: string): Promise<boolean> {
    await this.init();
    return deleteDead(this.ctx, messageId);
  }

  /** Deletes the dead letters that died more than `ageMs` ago; returns how many. */
  async deleteDeadOlderThan(ageMs: number): Promise<number> {
    await this.init();
    return deleteDeadBefore(this.ctx, nowMs(this.ctx) - ageMs);
  }
}
