/** The disk queue's public options and the shapes it reports. */
import type { Clock, DeliveryMeta, Logger, Metrics } from '../../../core/ports.ts';
import type { Scheduler } from './time.ts';

export interface DiskQueueOptions {
  /** Queue directory; created when missing. */
  dir: string;
  /** Name for logs and metric labels. @default the directory's base name */
  name?: string;
  /** How long a delivered message stays invisible before it is delivered again. @default 5 minutes */
  visibilityTimeoutMs?: number;
  /** Deliveries before a message goes to the dead-letter area. @default 5 */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt, with equal jitter (between half and all of it). @default 1000 */
  backoffBaseMs?: number;
  /** Retry delay cap. @default 5 minutes */
  backoffMaxMs?: number;
  /** A dedupe id sent again within this window is dropped (SQS FIFO uses 5 minutes). @default 5 minutes */
  dedupeWindowMs?: number;
  /** How often consumers look for messages sent by other processes; sends in this process wake them at once. @default 250 */
  pollIntervalMs?: number;
  /**
   * Dead letters older than this are deleted, when a consumer starts and then periodically (SQS
   * keeps a message 14 days at most). @default 14 days
   */
  deadLetterRetentionMs?: number;
  logger?: Logger;
  metrics?: Metrics;
  /** Injected for tests of the jitter. @default Math.random */
  random?: () => number;
  /** Every time the queue reads: send times, delays, leases, backoff, dedupe windows. @default systemClock */
  clock?: Clock;
  /** Timers for polling, batch windows and pauses after errors. @default systemScheduler */
  scheduler?: Scheduler;
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

/** One page of dead letters, newest first. */
export interface DeadLetterPage<T> {
  /** Dead letters in the area when the page was read. */
  total: number;
  items: DeadLetter<T>[];
  /** Cursor for the next page (the last id on this one); absent on the last page. */
  next?: string;
}
