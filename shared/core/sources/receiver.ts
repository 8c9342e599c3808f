/**
 * What an HTTP entry point does with one delivery, before enqueueing: the source's rate limit,
 * reading the delivery (parseWebhook: body cap, the sender's authentication, strict JSON, then
 * the sender's payload), and delivery-id dedupe (in memory; the durable dedupe sits in front of
 * the queue).
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
  /** Failed authentications draw from their own budget, so a stranger cannot spend the sender's. */
  private readonly failedAuthLimiters: SourceRateLimiters;

  constructor(options: { clock?: Clock; dedupe?: DeliveryDedupe } = {}) {
    const clock = options.clock ?? systemClock;
    this.dedupe = options.dedupe ?? new DeliveryDedupe(10_000, 24 * 60 * 60 * 1000, clock);
    this.limiters = new SourceRateLimiters(clock);
    this.failedAuthLimiters = new SourceRateLimiters(clock);
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
