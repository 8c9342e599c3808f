/**
 * A durable queue in a directory, with SQS semantics: at-least-once delivery, a visibility
 * timeout, retries with exponential backoff and jitter, a dead-letter area after `maxAttempts`,
 * deduplication ids within a window, and per-message delays. The embedded runtime uses it where
 * AWS uses SQS, and calls the same handlers.
 *
 * One file per message; its state is the directory it sits in and its name:
 *
 *   tmp/<seq>.0.<notBefore>.msg                    being written by a sender
 *   ready/<seq>.<attempts>.<notBefore>.msg         waiting; visible once notBefore (ms) has passed
 *   inflight/<seq>.<attempt>.<leaseUntil>.<owner>.msg   leased by a consumer until leaseUntil (ms)
 *   dead/<seq>.json                                dead letter, with its last error
 *   dedupe/<sha256 of dedupe id>                   hard link to a sent message; its mtime is the send time
 *
 * Every state change is one rename(2) of an immutable, fsynced file, so `kill -9` at any instant
 * leaves each message in exactly one state (or, between two steps of a dead-lettering, in two,
 * which recovery resolves). A lease whose owner process is gone is taken back at once; any other
 * lease when it expires. `seq` starts with the send time, so name order is FIFO order.
 *
 * Several processes may send into the same directory (the CLI does while the server consumes);
 * claiming is a rename, so two consumers never hold the same lease either.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, readdir, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { toWasmMirrorError, WasmMirrorError } from '../../core/errors.ts';
import type {
  DeliveryMeta,
  Logger,
  MessageHandler,
  Metrics,
  QueueProducer,
  SendOptions,
} from '../../core/ports.ts';
import { noMetrics, silentLogger } from '../../core/ports.ts';
import { ensureDir, errnoCode, fsyncDir, processAlive, writeNewFile } from '../../platform/files.ts';

export interface DiskQueueOptions {
  /** Queue directory; created when missing. */
  dir: string;
  /** Name for logs and metric labels. @default the directory's base name */
  name?: string;
  /** How long a delivered message stays invisible before it is delivered again. @default 5 minutes */
  visibilityTimeoutMs?: number;
  /** Deliveries before a message goes to the dead-letter area. @default 5 */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt, with full jitter between half and all of it. @default 1000 */
  backoffBaseMs?: number;
  /** Retry delay cap. @default 5 minutes */
  backoffMaxMs?: number;
  /** A dedupe id sent again within this window is dropped (SQS FIFO uses 5 minutes). @default 5 minutes */
  dedupeWindowMs?: number;
  /** How often consumers look for messages sent by other processes; sends in this process wake them at once. @default 250 */
  pollIntervalMs?: number;
  logger?: Logger;
  metrics?: Metrics;
  /** Injected for tests of the jitter. @default Math.random */
  random?: () => number;
}

export interface ConsumeOptions {
  /** Handlers running at once. @default 1 */
  concurrency?: number;
}

export interface BatchConsumeOptions {
  /** Most messages in one handler call. @default 10 */
  maxBatch?: number;
  /** After the first message, wait this long for more to coalesce. @default 0 */
  batchWindowMs?: number;
}

export type BatchHandler<T> = (bodies: T[], metas: DeliveryMeta[]) => Promise<void>;

export interface QueueDepth {
  /** Visible now. */
  ready: number;
  /** Leased by a consumer. */
  inFlight: number;
  /** Waiting for a send delay or a retry backoff. */
  delayed: number;
  dead: number;
}

export interface DeadLetterError {
  code: string;
  message: string;
}

export interface DeadLetter<T> {
  messageId: string;
  body: T;
  /** Deliveries made before it was dead-lettered. */
  attempts: number;
  sentAt: string;
  deadAt: string;
  dedupeId?: string;
  lastError: DeadLetterError;
}

interface StoredMessage<T> {
  v: 1;
  id: string;
  sentAt: string;
  dedupeId?: string;
  body: T;
}

interface Lease {
  seq: string;
  attempt: number;
  file: string;
}

interface Claimed<T> {
  lease: Lease;
  message: StoredMessage<T>;
}

const SEQ = /^\d{15}-[0-9a-f]{8}-[0-9a-f]{6}$/;
/** Sender temp files older than this belong to a sender that died. */
const ORPHAN_TEMP_MS = 60_000;
const HOUSEKEEPING_MS = 30_000;

/** Queue instances alive in this process, so a lease naming our pid can be told apart from a previous run's. */
const liveOwners = new Set<string>();

let lastSeqMs = 0;
let seqCounter = Math.floor(Math.random() * 0x10000);

function nextSeq(nowMs: number): string {
  // Monotonic within the process even if the wall clock steps back.
  lastSeqMs = Math.max(lastSeqMs, nowMs);
  seqCounter = (seqCounter + 1) % 0x100000000;
  return `${String(lastSeqMs).padStart(15, '0')}-${seqCounter.toString(16).padStart(8, '0')}-${randomBytes(3).toString('hex')}`;
}

function parseReady(name: string): { seq: string; attempts: number; notBefore: number } | undefined {
  const parts = name.split('.');
  if (parts.length !== 4 || parts[3] !== 'msg') return undefined;
  const [seq, attempts, notBefore] = parts as [string, string, string];
  if (!SEQ.test(seq) || !/^\d+$/.test(attempts) || !/^\d+$/.test(notBefore)) return undefined;
  return { seq, attempts: Number(attempts), notBefore: Number(notBefore) };
}

function parseInflight(
  name: string,
): { seq: string; attempt: number; leaseUntil: number; owner: string; pid: number } | undefined {
  const parts = name.split('.');
  if (parts.length !== 5 || parts[4] !== 'msg') return undefined;
  const [seq, attempt, leaseUntil, owner] = parts as [string, string, string, string];
  const pid = Number(owner.split('-')[0]);
  if (!SEQ.test(seq) || !/^\d+$/.test(attempt) || !/^\d+$/.test(leaseUntil) || !Number.isSafeInteger(pid)) {
    return undefined;
  }
  return { seq, attempt: Number(attempt), leaseUntil: Number(leaseUntil), owner, pid };
}

function queueError(action: string, err: unknown): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WasmMirrorError('QUEUE_FAILURE', `${action}: ${message}`, { cause: err, retryable: true });
}

export class DiskQueue<T> implements QueueProducer<T> {
  readonly dir: string;
  readonly name: string;
  private readonly visibilityTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly dedupeWindowMs: number;
  private readonly pollIntervalMs: number;
  private readonly logger: Logger;
  private readonly metrics: Metrics;
  private readonly random: () => number;
  private readonly owner = `${process.pid}-${randomBytes(4).toString('hex')}`;
  private readonly paths: { tmp: string; ready: string; inflight: string; dead: string; dedupe: string };

  private initialized: Promise<void> | undefined;
  private running = false;
  private loop: Promise<void> | undefined;
  private readonly active = new Set<Promise<void>>();
  private wake: (() => void) | undefined;
  private woken = false;
  private lastHousekeeping = 0;

  constructor(options: DiskQueueOptions) {
    this.dir = options.dir;
    this.name = options.name ?? basename(options.dir);
    this.visibilityTimeoutMs = options.visibilityTimeoutMs ?? 5 * 60_000;
    this.maxAttempts = options.maxAttempts ?? 5;
    this.backoffBaseMs = options.backoffBaseMs ?? 1000;
    this.backoffMaxMs = options.backoffMaxMs ?? 5 * 60_000;
    this.dedupeWindowMs = options.dedupeWindowMs ?? 5 * 60_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    this.logger = options.logger ?? silentLogger;
    this.metrics = options.metrics ?? noMetrics;
    this.random = options.random ?? Math.random;
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) {
      throw new WasmMirrorError(
        'CONFIG_INVALID',
        `queue ${this.name}: maxAttempts must be a positive integer`,
      );
    }
    this.paths = {
      tmp: join(this.dir, 'tmp'),
      ready: join(this.dir, 'ready'),
      inflight: join(this.dir, 'inflight'),
      dead: join(this.dir, 'dead'),
      dedupe: join(this.dir, 'dedupe'),
    };
    liveOwners.add(this.owner);
  }

  /** Creates the directories; the other methods call it on first use. */
  static async open<T>(options: DiskQueueOptions): Promise<DiskQueue<T>> {
    const queue = new DiskQueue<T>(options);
    await queue.init();
    return queue;
  }

  init(): Promise<void> {
    this.initialized ??= (async () => {
      for (const dir of Object.values(this.paths)) await ensureDir(dir);
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
    const delayMs = Math.max(0, Math.round((options.delaySeconds ?? 0) * 1000));
    if (!Number.isFinite(delayMs)) throw new WasmMirrorError('QUEUE_FAILURE', 'delaySeconds must be finite');
    const now = Date.now();
    const seq = nextSeq(now);
    const message: StoredMessage<T> = { v: 1, id: seq, sentAt: new Date(now).toISOString(), body };
    if (options.dedupeId !== undefined) message.dedupeId = options.dedupeId;
    let data: string;
    try {
      if (body === undefined) throw new Error('body is undefined');
      data = JSON.stringify(message);
    } catch (err) {
      throw new WasmMirrorError(
        'QUEUE_FAILURE',
        `queue ${this.name}: message body is not JSON-serialisable`,
        {
          cause: err,
        },
      );
    }

    const name = `${seq}.0.${now + delayMs}.msg`;
    const tmpPath = join(this.paths.tmp, name);
    let marker: string | undefined;
    let enqueued = false;
    try {
      await writeNewFile(tmpPath, data);
      if (options.dedupeId !== undefined) {
        marker = await this.claimDedupe(tmpPath, options.dedupeId);
        if (marker === undefined) {
          await unlink(tmpPath).catch(() => {});
          this.metrics.count('queue_events_total', { queue: this.name, event: 'duplicate' });
          return;
        }
      }
      try {
        await rename(tmpPath, join(this.paths.ready, name));
      } catch (err) {
        // Housekeeping in another process may have finished a slow deduplicated send for us.
        if (!(errnoCode(err) === 'ENOENT' && marker !== undefined)) throw err;
      }
      enqueued = true;
      await fsyncDir(this.paths.ready);
    } catch (err) {
      if (!enqueued) {
        await unlink(tmpPath).catch(() => {});
        // Release the id, or the caller's retry of this failed send would be dropped as a duplicate.
        if (marker !== undefined) await unlink(marker).catch(() => {});
      }
      throw queueError(`queue ${this.name}: send`, err);
    }
    this.metrics.count('queue_events_total', { queue: this.name, event: 'sent' });
    this.notify();
  }

  /**
   * Claims the dedupe id by hard-linking the staged message under the id's hash; returns the
   * marker, or undefined for a duplicate. Once claimed, the send completes even if this process
   * dies (housekeeping moves a linked temp file into ready/), so a retried send that is dropped as
   * a duplicate never loses the message.
   */
  private async claimDedupe(tmpPath: string, dedupeId: string): Promise<string | undefined> {
    const marker = join(this.paths.dedupe, createHash('sha256').update(dedupeId).digest('hex'));
    for (let round = 0; round < 2; round++) {
      try {
        await link(tmpPath, marker);
        await fsyncDir(this.paths.dedupe);
        return marker;
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      try {
        const st = await stat(marker);
        if (Date.now() - st.mtimeMs < this.dedupeWindowMs) return undefined;
        await unlink(marker);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------------------------
  // Consumers

  /** Delivers messages one by one (up to `concurrency` at once) to `handler`. */
  start(handler: MessageHandler<T>, options: ConsumeOptions = {}): void {
    const concurrency = options.concurrency ?? 1;
    this.begin(() => this.runSingle(handler, concurrency));
  }

  /**
   * Delivers messages in FIFO order, in batches of up to `maxBatch`, one handler call at a time:
   * whatever arrived while the previous call ran is coalesced into the next. If the handler throws,
   * the whole batch is retried. A message waiting for a retry holds back the ones after it, as in
   * an SQS FIFO message group; a message sent with a delay does not.
   */
  startBatch(handler: BatchHandler<T>, options: BatchConsumeOptions = {}): void {
    const maxBatch = options.maxBatch ?? 10;
    const batchWindowMs = options.batchWindowMs ?? 0;
    this.begin(() => this.runBatch(handler, maxBatch, batchWindowMs));
  }

  /** Stops polling and waits for running handlers to finish. */
  async stop(): Promise<void> {
    this.running = false;
    this.notify();
    await this.loop;
    await Promise.allSettled([...this.active]);
    this.loop = undefined;
  }

  get consuming(): boolean {
    return this.running;
  }

  private begin(run: () => Promise<void>): void {
    if (this.running || this.loop !== undefined) {
      throw new WasmMirrorError('QUEUE_FAILURE', `queue ${this.name} already has a consumer`);
    }
    this.running = true;
    this.loop = (async () => {
      try {
        await this.init();
        await this.guard(() => this.housekeeping(true), undefined);
        await run();
      } catch (err) {
        this.logger.error('queue consumer stopped', { queue: this.name, error: describeError(err) });
        this.running = false;
      }
    })();
  }

  private async runSingle(handler: MessageHandler<T>, concurrency: number): Promise<void> {
    while (this.running) {
      let claimedAny = false;
      if (this.active.size < concurrency) {
        const claimed = await this.guard(() => this.claim(concurrency - this.active.size, false), []);
        for (const item of claimed) {
          claimedAny = true;
          const task = this.deliver(item, handler).finally(() => {
            this.active.delete(task);
            this.notify();
          });
          this.active.add(task);
        }
      }
      if (!claimedAny || this.active.size >= concurrency) await this.sleep();
      await this.guard(() => this.housekeeping(false), undefined);
    }
  }

  private async runBatch(handler: BatchHandler<T>, maxBatch: number, batchWindowMs: number): Promise<void> {
    while (this.running) {
      let batch = await this.guard(() => this.claim(maxBatch, true), []);
      if (batch.length > 0 && batch.length < maxBatch && batchWindowMs > 0) {
        await delay(batchWindowMs);
        batch = batch.concat(await this.guard(() => this.claim(maxBatch - batch.length, true), []));
      }
      if (batch.length === 0) {
        await this.sleep();
      } else {
        const task = this.deliverBatch(batch, handler);
        this.active.add(task);
        await task;
        this.active.delete(task);
      }
      await this.guard(() => this.housekeeping(false), undefined);
    }
  }

  private async deliver(item: Claimed<T>, handler: MessageHandler<T>): Promise<void> {
    const meta: DeliveryMeta = { messageId: item.message.id, attempt: item.lease.attempt };
    try {
      await handler(item.message.body, meta);
    } catch (err) {
      await this.guard(() => this.fail(item, err), undefined);
      return;
    }
    await this.guard(() => this.ack(item.lease), undefined);
  }

  private async deliverBatch(batch: Claimed<T>[], handler: BatchHandler<T>): Promise<void> {
    const metas = batch.map((item) => ({ messageId: item.message.id, attempt: item.lease.attempt }));
    try {
      await handler(
        batch.map((item) => item.message.body),
        metas,
      );
    } catch (err) {
      for (const item of batch) await this.guard(() => this.fail(item, err), undefined);
      return;
    }
    for (const item of batch) await this.guard(() => this.ack(item.lease), undefined);
  }

  /** Claims up to `max` visible messages by renaming them into inflight/. */
  private async claim(max: number, fifo: boolean): Promise<Claimed<T>[]> {
    if (max <= 0) return [];
    const now = Date.now();
    if (fifo && (await this.foreignLeaseHeld(now))) return [];
    const names = (await readdir(this.paths.ready)).sort();
    const claimed: Claimed<T>[] = [];
    for (const name of names) {
      if (claimed.length >= max || !this.running) break;
      const parsed = parseReady(name);
      if (parsed === undefined) continue;
      if (parsed.notBefore > now) {
        if (fifo && parsed.attempts > 0) break;
        continue;
      }
      const attempt = parsed.attempts + 1;
      const file = `${parsed.seq}.${attempt}.${now + this.visibilityTimeoutMs}.${this.owner}.msg`;
      try {
        await rename(join(this.paths.ready, name), join(this.paths.inflight, file));
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw err;
      }
      const lease: Lease = { seq: parsed.seq, attempt, file };
      let message: StoredMessage<T>;
      try {
        message = JSON.parse(await readFile(join(this.paths.inflight, file), 'utf8')) as StoredMessage<T>;
        if (message.v !== 1 || message.id !== parsed.seq) throw new Error('unexpected message envelope');
      } catch (err) {
        await this.deadLetter(
          lease,
          { v: 1, id: parsed.seq, sentAt: new Date(now).toISOString(), body: null as T },
          { code: 'STATE_CORRUPT', message: `unreadable message file: ${describeError(err).message}` },
        );
        continue;
      }
      this.metrics.count('queue_events_total', { queue: this.name, event: 'delivered' });
      claimed.push({ lease, message });
    }
    return claimed;
  }

  /** FIFO: a message leased by another live consumer holds back the group. */
  private async foreignLeaseHeld(now: number): Promise<boolean> {
    const names = await readdir(this.paths.inflight);
    if (names.length === 0) return false;
    await this.reclaim(now);
    for (const name of await readdir(this.paths.inflight)) {
      const parsed = parseInflight(name);
      if (parsed !== undefined && parsed.owner !== this.owner) return true;
    }
    return false;
  }

  private async ack(lease: Lease): Promise<void> {
    try {
      await unlink(join(this.paths.inflight, lease.file));
      this.metrics.count('queue_events_total', { queue: this.name, event: 'succeeded' });
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
      this.logger.warn(
        'queue lease expired before the handler finished; the message will be delivered again',
        {
          queue: this.name,
          messageId: lease.seq,
          attempt: lease.attempt,
        },
      );
    }
  }

  private async fail(item: Claimed<T>, err: unknown): Promise<void> {
    const error = describeError(err);
    const { lease } = item;
    this.metrics.count('queue_events_total', { queue: this.name, event: 'failed' });
    if (lease.attempt >= this.maxAttempts) {
      await this.deadLetter(lease, item.message, error);
      return;
    }
    const wait = this.backoffMs(lease.attempt, err);
    this.logger.warn('queue handler failed; will retry', {
      queue: this.name,
      messageId: lease.seq,
      attempt: lease.attempt,
      retryInMs: wait,
      error,
    });
    try {
      await rename(
        join(this.paths.inflight, lease.file),
        join(this.paths.ready, `${lease.seq}.${lease.attempt}.${Date.now() + wait}.msg`),
      );
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
    }
  }

  private backoffMs(attempt: number, err: unknown): number {
    const exp = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (attempt - 1));
    const jittered = Math.round(exp / 2 + (this.random() * exp) / 2);
    const asked =
      err instanceof WasmMirrorError && err.retryAfterSeconds !== undefined
        ? err.retryAfterSeconds * 1000
        : 0;
    return Math.min(this.backoffMaxMs, Math.max(jittered, asked));
  }

  private async deadLetter(
    lease: Lease,
    message: StoredMessage<T>,
    lastError: DeadLetterError,
  ): Promise<void> {
    const dead: DeadLetter<T> = {
      messageId: message.id,
      body: message.body,
      attempts: lease.attempt,
      sentAt: message.sentAt,
      deadAt: new Date().toISOString(),
      lastError,
    };
    if (message.dedupeId !== undefined) dead.dedupeId = message.dedupeId;
    const tmp = join(this.paths.tmp, `dead-${lease.seq}-${randomBytes(4).toString('hex')}.json`);
    try {
      await writeNewFile(tmp, JSON.stringify(dead));
      await rename(tmp, join(this.paths.dead, `${lease.seq}.json`));
      await fsyncDir(this.paths.dead);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await unlink(join(this.paths.inflight, lease.file)).catch((err) => {
      if (errnoCode(err) !== 'ENOENT') throw err;
    });
    this.metrics.count('queue_events_total', { queue: this.name, event: 'dead' });
    this.logger.error('queue message dead-lettered', {
      queue: this.name,
      messageId: lease.seq,
      attempts: lease.attempt,
      error: lastError,
    });
  }

  // ---------------------------------------------------------------------------------------------
  // Recovery and housekeeping

  /**
   * Takes back leases that expired or whose consumer is gone, finishes sends that a dead sender had
   * already claimed a dedupe id for, and forgets dedupe ids older than the window. Consumers run it
   * when they start and every 30 s; it is safe to run from several processes at once.
   */
  async recover(): Promise<void> {
    await this.init();
    await this.housekeeping(true);
  }

  private async housekeeping(force: boolean): Promise<void> {
    const now = Date.now();
    await this.reclaim(now);
    if (!force && now - this.lastHousekeeping < HOUSEKEEPING_MS) return;
    this.lastHousekeeping = now;
    await this.recoverTemps(now);
    await this.expireDedupe(now);
  }

  private async reclaim(now: number): Promise<void> {
    for (const name of await readdir(this.paths.inflight)) {
      const parsed = parseInflight(name);
      if (parsed === undefined) continue;
      const ownerGone =
        parsed.pid === process.pid ? !liveOwners.has(parsed.owner) : !processAlive(parsed.pid);
      if (parsed.leaseUntil > now && !ownerGone) continue;
      const lease: Lease = { seq: parsed.seq, attempt: parsed.attempt, file: name };
      const path = join(this.paths.inflight, name);
      if (await exists(join(this.paths.dead, `${parsed.seq}.json`))) {
        // Crashed between writing the dead letter and removing the lease.
        await unlink(path).catch(() => {});
        continue;
      }
      this.metrics.count('queue_events_total', { queue: this.name, event: 'reclaimed' });
      const why = ownerGone ? 'its consumer stopped' : 'its visibility timeout expired';
      if (parsed.attempt >= this.maxAttempts) {
        let message: StoredMessage<T>;
        try {
          message = JSON.parse(await readFile(path, 'utf8')) as StoredMessage<T>;
        } catch (err) {
          if (errnoCode(err) === 'ENOENT') continue;
          message = { v: 1, id: parsed.seq, sentAt: new Date(now).toISOString(), body: null as T };
        }
        await this.deadLetter(lease, message, {
          code: 'QUEUE_FAILURE',
          message: `delivery ${parsed.attempt} did not finish: ${why}`,
        });
        continue;
      }
      this.logger.warn('queue lease taken back; the message will be delivered again', {
        queue: this.name,
        messageId: parsed.seq,
        attempt: parsed.attempt,
        reason: why,
      });
      try {
        await rename(path, join(this.paths.ready, `${parsed.seq}.${parsed.attempt}.${now}.msg`));
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
  }

  private async recoverTemps(now: number): Promise<void> {
    for (const name of await readdir(this.paths.tmp)) {
      const path = join(this.paths.tmp, name);
      try {
        const st = await stat(path);
        if (now - st.mtimeMs < ORPHAN_TEMP_MS) continue;
        if (st.nlink > 1 && parseReady(name) !== undefined) {
          // The sender claimed a dedupe id, so later sends of it are dropped: deliver this one.
          await rename(path, join(this.paths.ready, name));
        } else {
          await unlink(path);
        }
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
  }

  private async expireDedupe(now: number): Promise<void> {
    for (const name of await readdir(this.paths.dedupe)) {
      const path = join(this.paths.dedupe, name);
      try {
        const st = await stat(path);
        if (now - st.mtimeMs >= this.dedupeWindowMs) await unlink(path);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Inspection and dead letters

  async depth(): Promise<QueueDepth> {
    await this.init();
    const now = Date.now();
    let ready = 0;
    let delayed = 0;
    for (const name of await readdir(this.paths.ready)) {
      const parsed = parseReady(name);
      if (parsed === undefined) continue;
      if (parsed.notBefore > now) delayed++;
      else ready++;
    }
    const inFlight = (await readdir(this.paths.inflight)).filter(
      (n) => parseInflight(n) !== undefined,
    ).length;
    const dead = (await readdir(this.paths.dead)).filter((n) => n.endsWith('.json')).length;
    return { ready, inFlight, delayed, dead };
  }

  /** Dead letters, oldest first, each with the error of its last delivery. */
  async listDead(): Promise<DeadLetter<T>[]> {
    await this.init();
    const out: DeadLetter<T>[] = [];
    for (const name of (await readdir(this.paths.dead)).sort()) {
      if (!name.endsWith('.json')) continue;
      try {
        out.push(JSON.parse(await readFile(join(this.paths.dead, name), 'utf8')) as DeadLetter<T>);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw queueError(`queue ${this.name}: read dead letter ${name}`, err);
      }
    }
    return out;
  }

  /** Puts a dead letter back on the queue with a fresh attempt count. False if there is no such dead letter. */
  async redrive(messageId: string): Promise<boolean> {
    await this.init();
    if (!SEQ.test(messageId)) return false;
    const deadPath = join(this.paths.dead, `${messageId}.json`);
    let dead: DeadLetter<T>;
    try {
      dead = JSON.parse(await readFile(deadPath, 'utf8')) as DeadLetter<T>;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw queueError(`queue ${this.name}: redrive ${messageId}`, err);
    }
    const message: StoredMessage<T> = { v: 1, id: messageId, sentAt: dead.sentAt, body: dead.body };
    if (dead.dedupeId !== undefined) message.dedupeId = dead.dedupeId;
    const name = `${messageId}.0.${Date.now()}.msg`;
    const tmp = join(this.paths.tmp, `redrive-${name}`);
    try {
      await writeNewFile(tmp, JSON.stringify(message));
      await rename(tmp, join(this.paths.ready, name));
      await fsyncDir(this.paths.ready);
      await unlink(deadPath);
      await fsyncDir(this.paths.dead);
    } catch (err) {
      await unlink(tmp).catch(() => {});
      throw queueError(`queue ${this.name}: redrive ${messageId}`, err);
    }
    this.metrics.count('queue_events_total', { queue: this.name, event: 'redriven' });
    this.notify();
    return true;
  }

  /** Redrives every dead letter; returns how many. */
  async redriveAll(): Promise<number> {
    let n = 0;
    for (const dead of await this.listDead()) if (await this.redrive(dead.messageId)) n++;
    return n;
  }

  /** Deletes a dead letter for good. False if there is no such dead letter. */
  async deleteDead(messageId: string): Promise<boolean> {
    await this.init();
    if (!SEQ.test(messageId)) return false;
    try {
      await unlink(join(this.paths.dead, `${messageId}.json`));
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw queueError(`queue ${this.name}: delete dead letter ${messageId}`, err);
    }
  }

  // ---------------------------------------------------------------------------------------------

  /** Wakes the consumer loop, or makes its next sleep return at once if it is busy. */
  private notify(): void {
    if (this.wake !== undefined) this.wake();
    else this.woken = true;
  }

  /** Waits for a send in this process, a finished handler, or the poll interval. */
  private sleep(): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        if (this.wake === wake) this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, this.pollIntervalMs);
      this.wake = wake;
    });
  }

  /** Keeps the consumer alive through filesystem errors: they are logged and the loop carries on. */
  private async guard<R>(fn: () => Promise<R>, fallback: R): Promise<R> {
    try {
      return await fn();
    } catch (err) {
      this.logger.error('queue operation failed', { queue: this.name, error: describeError(err) });
      this.metrics.count('queue_events_total', { queue: this.name, event: 'error' });
      await delay(Math.min(this.pollIntervalMs, 1000));
      return fallback;
    }
  }
}

function describeError(err: unknown): DeadLetterError {
  const e = toWasmMirrorError(err);
  return { code: e.code, message: e.message };
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
