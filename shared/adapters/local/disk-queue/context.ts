/** What every part of one queue instance shares: its directory, settings, telemetry and time. */
import { basename } from 'node:path';
import type { BackoffPolicy } from '../../../core/backoff.ts';
import { WasmMirrorError } from '../../../core/errors.ts';
import type { Clock, Logger, Metrics } from '../../../core/ports.ts';
import { noMetrics, silentLogger, systemClock } from '../../../core/ports.ts';
import { newOwner, type QueuePaths, queuePaths } from './layout.ts';
import { type Scheduler, systemScheduler } from './time.ts';
import type { DiskQueueOptions } from './types.ts';

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
  return {
    name,
    paths: queuePaths(options.dir),
    owner: newOwner(),
    visibilityTimeoutMs: options.visibilityTimeoutMs ?? 5 * 60_000,
    maxAttempts,
    backoff: { baseMs: options.backoffBaseMs ?? 1000, maxMs: options.backoffMaxMs ?? 5 * 60_000 },
    dedupeWindowMs: options.dedupeWindowMs ?? 5 * 60_000,
    pollIntervalMs: options.pollIntervalMs ?? 250,
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
