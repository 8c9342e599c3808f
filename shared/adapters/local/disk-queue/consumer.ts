/**
 * The consumer loop of one queue instance: claims messages, hands them to the handler one by one
 * or in batches, and settles each lease with the outcome. Filesystem errors are logged and the
 * loop carries on; only `stop` ends it.
 */
import { WasmMirrorError } from '../../../core/errors.ts';
import type { DeliveryMeta, MessageHandler } from '../../../core/ports.ts';
import { claim } from './claim.ts';
import { countEvent, type QueueContext } from './context.ts';
import { type Claimed, describeError } from './layout.ts';
import { ack, fail } from './leases.ts';
import { delay, type Waker } from './time.ts';
import type { BatchConsumeOptions, BatchHandler, ConsumeOptions } from './types.ts';

export interface ConsumerHooks {
  /** Creates the queue directories. */
  init(): Promise<void>;
  /** Takes back stale leases; `force` also runs the slower chores that are otherwise throttled. */
  housekeeping(force: boolean): Promise<void>;
}

export class Consumer<T> {
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly active = new Set<Promise<void>>();

  constructor(
    private readonly ctx: QueueContext,
    private readonly waker: Waker,
    private readonly hooks: ConsumerHooks,
  ) {}

  get consuming(): boolean {
    return this.running;
  }

  start(handler: MessageHandler<T>, options: ConsumeOptions = {}): void {
    const concurrency = options.concurrency ?? 1;
    this.begin(() => this.runSingle(handler, concurrency));
  }

  startBatch(handler: BatchHandler<T>, options: BatchConsumeOptions = {}): void {
    const maxBatch = options.maxBatch ?? 10;
    const batchWindowMs = options.batchWindowMs ?? 0;
    this.begin(() => this.runBatch(handler, maxBatch, batchWindowMs));
  }

  async stop(): Promise<void> {
    this.running = false;
    this.waker.notify();
    await this.loop;
    await Promise.allSettled([...this.active]);
    this.loop = undefined;
  }

  private begin(run: () => Promise<void>): void {
    if (this.running || this.loop !== undefined) {
      throw new WasmMirrorError('QUEUE_FAILURE', `queue ${this.ctx.name} already has a consumer`);
    }
    this.running = true;
    this.loop = (async () => {
      try {
        await this.hooks.init();
        await this.guard(() => this.hooks.housekeeping(true), undefined);
        await run();
      } catch (err) {
        this.ctx.logger.error('queue consumer stopped', { queue: this.ctx.name, error: describeError(err) });
        this.running = false;
      }
    })();
  }

  private claim(max: number, fifo: boolean): Promise<Claimed<T>[]> {
    return this.guard(() => claim<T>(this.ctx, { max, fifo, keepGoing: () => this.running }), []);
  }

  private async runSingle(handler: MessageHandler<T>, concurrency: number): Promise<void> {
    while (this.running) {
      let claimedAny = false;
      if (this.active.size < concurrency) {
        for (const item of await this.claim(concurrency - this.active.size, false)) {
          claimedAny = true;
          const task = this.deliver(item, handler).finally(() => {
            this.active.delete(task);
            this.waker.notify();
          });
          this.active.add(task);
        }
      }
      if (!claimedAny || this.active.size >= concurrency) await this.waker.sleep();
      await this.guard(() => this.hooks.housekeeping(false), undefined);
    }
  }

  private async runBatch(handler: BatchHandler<T>, maxBatch: number, batchWindowMs: number): Promise<void> {
    while (this.running) {
      let batch = await this.claim(maxBatch, true);
      if (batch.length > 0 && batch.length < maxBatch && batchWindowMs > 0) {
        await delay(this.ctx.scheduler, batchWindowMs);
        batch = batch.concat(await this.claim(maxBatch - batch.length, true));
      }
      if (batch.length === 0) {
        await this.waker.sleep();
      } else {
        const task = this.deliverBatch(batch, handler);
        this.active.add(task);
        await task;
        this.active.delete(task);
      }
      await this.guard(() => this.hooks.housekeeping(false), undefined);
    }
  }

  private async deliver(item: Claimed<T>, handler: MessageHandler<T>): Promise<void> {
    const meta: DeliveryMeta = { messageId: item.message.id, attempt: item.lease.attempt };
    try {
      await handler(item.message.body, meta);
    } catch (err) {
      await this.guard(() => fail(this.ctx, item, err), undefined);
      return;
    }
    await this.guard(() => ack(this.ctx, item.lease), undefined);
  }

  /** One handler call for the whole batch: if it throws, every message in it is retried. */
  private async deliverBatch(batch: Claimed<T>[], handler: BatchHandler<T>): Promise<void> {
    const metas = batch.map((item) => ({ messageId: item.message.id, attempt: item.lease.attempt }));
    try {
      await handler(
        batch.map((item) => item.message.body),
        metas,
      );
    } catch (err) {
      for (const item of batch) await this.guard(() => fail(this.ctx, item, err), undefined);
      return;
    }
    for (const item of batch) await this.guard(() => ack(this.ctx, item.lease), undefined);
  }

  /** Keeps the loop alive through filesystem errors: they are logged, and it pauses before going on. */
  private async guard<R>(fn: () => Promise<R>, fallback: R): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      this.ctx.logger.error('queue operation failed', { queue: this.ctx.name, error: describeError(err) });
      countEvent(this.ctx, 'error');
      await delay(this.ctx.scheduler, Math.min(this.ctx.pollIntervalMs, 1000));
      return fallback;
    }
  }
}
