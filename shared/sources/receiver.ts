/**
 * What an HTTP entry point does with one delivery, before enqueueing: the source's rate limit,
 * the parser, and delivery-id dedupe (in memory; the durable dedupe sits in front of the queue).
 */
import { WasmMirrorError } from '../errors.ts';
import type { Clock } from '../ports.ts';
import { systemClock } from '../ports.ts';
import { DeliveryDedupe } from './dedupe.ts';
import { SourceRateLimiters } from './rate-limit.ts';
import { parseWebhook } from './registry.ts';
import type { ParsedDelivery, SourceConfig, WebhookRequest } from './types.ts';

export interface ReceivedDelivery extends ParsedDelivery {
  /** The sender's delivery id was seen before: acknowledge (2xx) and do nothing. */
  duplicate: boolean;
}

export class WebhookReceiver {
  readonly dedupe: DeliveryDedupe;
  private readonly limiters: SourceRateLimiters;

  constructor(options: { clock?: Clock; dedupe?: DeliveryDedupe } = {}) {
    const clock = options.clock ?? systemClock;
    this.dedupe = options.dedupe ?? new DeliveryDedupe(10_000, 24 * 60 * 60 * 1000, clock);
    this.limiters = new SourceRateLimiters(clock);
  }

  /**
   * Throws WEBHOOK_RATE_LIMITED (429) before any parsing when the source is over its rate, then
   * whatever parseWebhook throws. A replayed delivery id comes back acknowledged with no jobs:
   * senders retry until they get a 2xx, so refusing a replay would loop forever.
   */
  receive(source: SourceConfig, secret: string, request: WebhookRequest): ReceivedDelivery {
    if (!this.limiters.take(source)) {
      throw new WasmMirrorError('WEBHOOK_RATE_LIMITED', `source '${source.id}' is over its webhook rate`, {
        retryable: true,
        retryAfterSeconds: 60,
      });
    }
    const parsed = parseWebhook(source, secret, request);
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
