/**
 * Webhook sources: one sender per source type (`senders`), the entry point that reads a delivery
 * (`parseWebhook`), and the pieces an HTTP entry point composes around it (rate limit, dedupe).
 */
export { DeliveryDedupe } from './dedupe.ts';
export { parseEcrTrusted } from './ecr.ts';
export { RateLimiter, SourceRateLimiters } from './rate-limit.ts';
export { type ReceivedDelivery, WebhookReceiver } from './receiver.ts';
export { parseWebhook, senders } from './registry.ts';
export * from './types.ts';
