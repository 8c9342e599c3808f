/**
 * In-memory, bounded delivery-id dedupe for the embedded runtime: remembers the last `capacity`
 * ids per process for `ttlMs`. Durable dedupe (across restarts) belongs to the queue layer.
 */
import type { Clock } from '../ports.ts';
import { systemClock } from '../ports.ts';

export class DeliveryDedupe {
  /** key → expiry (ms); Map insertion order doubles as the eviction order. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly capacity = 10_000,
    private readonly ttlMs = 24 * 60 * 60 * 1000,
    private readonly clock: Clock = systemClock,
  ) {}

  /**
   * Records the delivery and returns true the first time it is seen (per source); false for a
   * replay within the window. A delivery without an id is always new.
   */
  firstSeen(sourceId: string, deliveryId: string | undefined): boolean {
    if (deliveryId === undefined || deliveryId === '') return true;
    const key = `${sourceId}\n${deliveryId}`;
    const now = this.clock.now().getTime();
    const expiry = this.seen.get(key);
    if (expiry !== undefined && expiry > now) return false;
    this.seen.delete(key);
    this.seen.set(key, now + this.ttlMs);
    this.evict(now);
    return true;
  }

  /** Forgets a delivery, e.g. when enqueueing its jobs failed and the sender will retry. */
  forget(sourceId: string, deliveryId: string | undefined): void {
    if (deliveryId) this.seen.delete(`${sourceId}\n${deliveryId}`);
  }

  get size(): number {
    return this.seen.size;
  }

  private evict(now: number): void {
    for (const [key, expiry] of this.seen) {
      if (this.seen.size <= this.capacity && expiry > now) break;
      this.seen.delete(key);
    }
  }
}
