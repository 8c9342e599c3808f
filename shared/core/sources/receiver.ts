/**
 * What an HTTP entry point does with one delivery, before enqueueing: the source's rate limit,
 * reading the delivery (parseWebhook: body cap, the sender's authentication, strict JSON, then
 * the sender's payload), and delivery-id dedupe (in memory; the durable dedupe sits in front of
 * the queue). Before the body is read, `admit` checks what the head can prove; before jobs are
 * queued, `takeJobs` spends the source's job budget, so one delivery of thousands of events
 * cannot queue thousands of jobs.
 */
import { WasmMirrorError } from '../errors.ts';
import type { Clock } from '../ports.ts';
import { systemClock } from '../ports.ts';
import { DeliveryDedupe } from './dedupe.ts';
import { SourceRateLimiters } from './rate-limit.ts';
import { admitWebhook, parseWebhook } from './registry.ts';
import type {
  DeliveryAdmission,
  ParsedDelivery,
  SourceConfig,
  WebhookRequest,
  WebhookRequestHead,
} from './types.ts';

/** Jobs one delivery may queue; the events past it are dropped, and the answer says how many. */
export const DEFAULT_MAX_JOBS_PER_DELIVERY = 100;

export interface ReceivedDelivery extends ParsedDelivery {
  /** The sender's delivery id was seen before: acknowledge (2xx) and do nothing. */
  duplicate: boolean;
}

export class WebhookReceiver {
  readonly dedupe: DeliveryDedupe;
  private readonly limiters: SourceRateLimiters;
  /** Failed authentications draw from their own budget, so a stranger cannot spend the sender's. */
  private readonly failedAuthLimiters: SourceRateLimiters;

  private readonly jobBudgets: JobBudgets;
  private readonly maxJobsPerDelivery: number;

  constructor(options: { clock?: Clock; dedupe?: DeliveryDedupe; maxJobsPerDelivery?: number } = {}) {
    const clock = options.clock ?? systemClock;
    this.dedupe = options.dedupe ?? new DeliveryDedupe(10_000, 24 * 60 * 60 * 1000, clock);
    this.limiters = new SourceRateLimiters(clock);
    this.failedAuthLimiters = new SourceRateLimiters(clock);
    this.jobBudgets = new JobBudgets(clock);
    this.maxJobsPerDelivery = Math.max(
      1,
      Math.floor(options.maxJobsPerDelivery ?? DEFAULT_MAX_JOBS_PER_DELIVERY),
    );
  }

  /**
   * What the head of a delivery proves, before its body is read (see admitWebhook). A refusal
   * draws from the failed-authentication budget, like one after reading the body would.
   */
  admit(source: SourceConfig, secret: string, head: WebhookRequestHead): DeliveryAdmission {
    try {
      return admitWebhook(source, secret, head);
    } catch (err) {
      const unauthenticated = err instanceof WasmMirrorError && err.code === 'WEBHOOK_UNAUTHENTICATED';
      if (unauthenticated && !this.failedAuthLimiters.take(source)) throw rateLimited(source);
      throw err;
    }
  }

  /**
   * Jobs one delivery of this source may queue: the per-delivery cap, and never more than the
   * source's job budget holds when full (a bigger delivery could never be let in).
   */
  jobsPerDelivery(source: SourceConfig): number {
    return Math.max(0, Math.min(this.maxJobsPerDelivery, this.jobBudgets.capacity(source)));
  }

  /**
   * Spends `count` tokens of the source's job budget (its `rateLimitPerMinute` jobs per minute),
   * all or none. Undefined when spent; otherwise the seconds until they would be there.
   */
  takeJobs(source: SourceConfig, count: number): number | undefined {
    return this.jobBudgets.take(source, count);
  }

  /** Gives back tokens of jobs that were not queued after all (the queue failed). */
  returnJobs(source: SourceConfig, count: number): void {
    this.jobBudgets.give(source, count);
  }

  /**
   * Whatever parseWebhook throws, or WEBHOOK_RATE_LIMITED (429) when the source is over its rate:
   * authenticated deliveries and failed authentications are counted apart, so a flood of forged
   * requests to `/hooks/<id>` never gets the real sender's deliveries refused. A replayed
   * delivery id comes back acknowledged with no jobs: senders retry until they get a 2xx, so
   * refusing a replay would loop forever.
   */
  receive(source: SourceConfig, secret: string, request: WebhookRequest): ReceivedDelivery {
    let parsed: ParsedDelivery;
    try {
      parsed = parseWebhook(source, secret, request);
    } catch (err) {
      const unauthenticated = err instanceof WasmMirrorError && err.code === 'WEBHOOK_UNAUTHENTICATED';
      if (unauthenticated && !this.failedAuthLimiters.take(source)) throw rateLimited(source);
      throw err;
    }
    if (!this.limiters.take(source)) throw rateLimited(source);
    if (!this.dedupe.firstSeen(source.id, parsed.deliveryId)) {
      return {
        deliveryId: parsed.deliveryId,
        jobs: [],
        ignored: [{ reason: 'duplicate-delivery' }],
        duplicate: true,
      };
    }
    return { ...parsed, duplicate: false };
  }
}

function rateLimited(source: SourceConfig): WasmMirrorError {
  return new WasmMirrorError('WEBHOOK_RATE_LIMITED', `source '${source.id}' is over its webhook rate`, {
    retryable: true,
    retryAfterSeconds: 60,
  });
}

/**
 * A token bucket of jobs per source: full at `rateLimitPerMinute` tokens, refilled continuously
 * at that rate per minute. One bucket per configured source, so the map stays small.
 */
class JobBudgets {
  private readonly buckets = new Map<string, { tokens: number; updatedMs: number }>();

  constructor(private readonly clock: Clock) {}

  capacity(source: SourceConfig): number {
    const perMinute = source.rateLimitPerMinute;
    return Number.isFinite(perMinute) && perMinute > 0 ? Math.floor(perMinute) : 0;
  }

  take(source: SourceConfig, count: number): number | undefined {
    if (count <= 0) return undefined;
    const capacity = this.capacity(source);
    const bucket = this.refill(source, capacity);
    if (bucket.tokens >= count) {
      bucket.tokens -= count;
      return undefined;
    }
    if (capacity < count) return 60;
    const waitMs = ((count - bucket.tokens) * 60_000) / capacity;
    return Math.max(1, Math.ceil(waitMs / 1000));
  }

  give(source: SourceConfig, count: number): void {
    const capacity = this.capacity(source);
    const bucket = this.refill(source, capacity);
    bucket.tokens = Math.min(capacity, bucket.tokens + Math.max(0, count));
  }

  private refill(source: SourceConfig, capacity: number): { tokens: number; updatedMs: number } {
    const now = this.clock.now().getTime();
    let bucket = this.buckets.get(source.id);
    if (bucket === undefined) {
      bucket = { tokens: capacity, updatedMs: now };
      this.buckets.set(source.id, bucket);
      return bucket;
    }
    // A clock that steps back must not mint tokens.
    const elapsed = Math.max(0, now - bucket.updatedMs);
    bucket.tokens = Math.min(capacity, bucket.tokens + (elapsed * capacity) / 60_000);
    bucket.updatedMs = Math.max(bucket.updatedMs, now);
    return bucket;
  }
}
