/**
 * Webhook sources: one parser per source type (`parsers`), the dispatcher (`parseWebhook`), and
 * the pieces an HTTP entry point composes around it (rate limit, dedupe, API Gateway bodies).
 */
export { fromApiGatewayBody } from './common.ts';
export { DeliveryDedupe } from './dedupe.ts';
export { parseEcrTrusted } from './ecr.ts';
export { RateLimiter, SourceRateLimiters } from './rate-limit.ts';
export { type ReceivedDelivery, WebhookReceiver } from './receiver.ts';
export { parsers, parseWebhook } from './registry.ts';
export * from './types.ts';
