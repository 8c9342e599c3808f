/** What every part of one queue instance shares: its directory, settings, telemetry and time. */
import { basename } from 'node:path';
import type { BackoffPolicy } from '../../../core/backoff.ts';
import { WasmMirrorError } from '../../../core/errors.ts';
import type { Clock, Logger, Metrics } from '../../../core/ports.ts';
import { noMetrics, silentLogger, systemClock } from '../../../core/ports.ts';
import { newOwner, type QueuePaths, queuePaths } from './layout.ts';
import { ReadyIndex } from './ready-index.ts';
import { type Scheduler, systemScheduler } from './time.ts';
import type { DiskQueueOptions } from './types.ts';

/** As long as SQS keeps a message at most. */
export const DEFAULT_DEAD_LETTER_RETENTION_MS = 14 * 24 * 3600_000;

export interface QueueContext {
  readonly name: string;
  readonly paths: QueuePaths;
  /** Lease owner id of this instance. */
  readonly owner: string;
  readonly visibilityTimeoutMs: number;
  readonly maxAttempts: number;
  readonly backoff: BackoffPolicy;
  readonly dedupeWindowMs: number;
  readonly pollIntervalMs: number;
  readonly deadLetterRetentionMs: number;
  /** What this instance knows of ready/; claims take from it. */
  readonly readyIndex: ReadyIndex;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly random: () => number;
  readonly clock: Clock;
  readonly scheduler: Scheduler;
}

export function queueContext(options: DiskQueueOptions): QueueContext {
  const name = options.name ?? basename(options.dir);
  const maxAttempts = options.maxAttempts ?? 5;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new WasmMirrorError('CONFIG_INVALID', `queue ${name}: maxAttempts must be a positive integer`);
  }
  const retention = options.deadLetterRetentionMs ?? DEFAULT_DEAD_LETTER_RETENTION_MS;
  if (!(retention > 0)) {
    throw new WasmMirrorError('CONFIG_INVALID', `queue ${name}: deadLetterRetentionMs must be positive`);
  }
  const paths = queuePaths(options.dir);
  const pollIntervalMs = options.pollIntervalMs ?? 250;
  return {
    name,
    paths,
    owner: newOwner(),
    visibilityTimeoutMs: options.visibilityTimeoutMs ?? 5 * 60_000,
    maxAttempts,
    backoff: { baseMs: options.backoffBaseMs ?? 1000, maxMs: options.backoffMaxMs ?? 5 * 60_000 },
    dedupeWindowMs: options.dedupeWindowMs ?? 5 * 60_000,
    pollIntervalMs,
    deadLetterRetentionMs: retention,
    readyIndex: new ReadyIndex({ dir: paths.ready, pollIntervalMs }),
    logger: options.logger ?? silentLogger,
    metrics: options.metrics ?? noMetrics,
    random: options.random ?? Math.random,
    clock: options.clock ?? systemClock,
    scheduler: options.scheduler ?? systemScheduler,
  };
}

export function nowMs(ctx: QueueContext): number {
  return ctx.clock.now().getTime();
}

export function countEvent(ctx: QueueContext, event: string): void {
  ctx.metrics.count('queue_events_total', { queue: ctx.name, event });
}
