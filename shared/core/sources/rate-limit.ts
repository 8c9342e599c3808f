/**
 * Per-source token bucket: each source may burst up to its per-minute allowance and refills
 * continuously, so a flood from one source cannot starve the others.
 */
import type { Clock } from '../ports.ts';
import { systemClock } from '../ports.ts';

interface Bucket {
  tokens: number;
  updatedMs: number;
}

export class RateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly capacity: number;
  private readonly refillPerMs: number;

  /** @param perMinute deliveries per minute per source, also the burst size; 0 or less refuses all. */
  constructor(
    perMinute: number,
    private readonly clock: Clock = systemClock,
    /** Sources tracked at most; the least recently used bucket is dropped beyond it. */
    private readonly maxSources = 10_000,
  ) {
    this.capacity = Number.isFinite(perMinute) && perMinute > 0 ? perMinute : 0;
    this.refillPerMs = this.capacity / 60_000;
  }

  /** Takes one token for the source; false when it is over its rate. */
  take(sourceId: string): boolean {
    if (this.capacity === 0) return false;
    const now = this.clock.now().getTime();
    let bucket = this.buckets.get(sourceId);
    if (bucket === undefined) {
      bucket = { tokens: this.capacity, updatedMs: now };
      if (this.buckets.size >= this.maxSources) {
        const oldest = this.buckets.keys().next().value;
        if (oldest !== undefined) this.buckets.delete(oldest);
      }
    } else {
      this.buckets.delete(sourceId); // re-inserted below: Map order is the LRU order
      // A clock that steps back must not mint tokens.
      const elapsed = Math.max(0, now - bucket.updatedMs);
      bucket.tokens = Math.min(this.capacity, bucket.tokens + elapsed * this.refillPerMs);
      bucket.updatedMs = Math.max(bucket.updatedMs, now);
    }
    this.buckets.set(sourceId, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

/** One limiter per source, each with its own configured rate. */
export class SourceRateLimiters {
  private readonly limiters = new Map<string, RateLimiter>();
  constructor(private readonly clock: Clock = systemClock) {}

  take(source: { id: string; rateLimitPerMinute: number }): boolean {
    let limiter = this.limiters.get(source.id);
    if (limiter === undefined) {
      limiter = new RateLimiter(source.rateLimitPerMinute, this.clock, 1);
      this.limiters.set(source.id, limiter);
    }
    return limiter.take(source.id);
  }
}
