/**
 * Webhook sources: each `type` in the config has a parser, a pure function from
 * (source config, its secret, the raw request) to mirror jobs or a typed rejection.
 */
import type { MirrorJob } from '../domain.ts';

export const SOURCE_TYPES = [
  'distribution',
  'harbor',
  'github',
  'quay',
  'dockerhub',
  'artifactory',
  'acr',
  'cloudevents',
  'ecr',
] as const;

export type SourceType = (typeof SOURCE_TYPES)[number];

export interface SourceConfig {
  /** URL segment: `POST /hooks/<id>`. */
  id: string;
  type: SourceType;
  /** host[:port]; the only registry this source's jobs pull from. */
  registry: string;
  /** Plain http allowed to this registry. */
  insecure: boolean;
  /** Repository globs (`*` within a path segment, `**` across segments). */
  repositories: string[];
  /** Name of the secret (env var embedded, Secrets Manager entry in AWS) holding the webhook secret. */
  webhookSecretEnv?: string;
  /** Header carrying the secret for senders with a custom header (acr, cloudevents). */
  webhookHeader?: string;
  /** Pull credentials: names of the secrets holding them. */
  credentials?: { usernameEnv: string; passwordEnv: string };
  /** Periodic reconcile (list tags, mirror what changed); milliseconds, absent = off. */
  reconcileIntervalMs?: number;
  /** Webhook deliveries accepted per minute from this source. */
  rateLimitPerMinute: number;
}

export interface WebhookRequest {
  /** Header names lowercased. */
  headers: Readonly<Record<string, string>>;
  /** Raw body bytes, exactly as received (HMACs cover these). */
  body: Uint8Array;
  /** Secret segment of `/hooks/<id>/<token>`, for senders that can only authenticate by URL. */
  pathToken?: string;
  receivedAt: Date;
}

export interface IgnoredEvent {
  /** Why: `blob-push`, `pull`, `delete`, `ping`, `not-allowed-repository`, `other-registry`, … */
  reason: string;
  detail?: string;
}

export interface ParsedDelivery {
  /** Sender's delivery id, for dedupe (X-GitHub-Delivery, envelope event id, …). */
  deliveryId?: string;
  jobs: MirrorJob[];
  ignored: IgnoredEvent[];
}

/**
 * Throws WasmMirrorError with WEBHOOK_UNAUTHENTICATED (401), WEBHOOK_MALFORMED (400) or
 * WEBHOOK_TOO_LARGE (413); anything else it returns, including events deliberately ignored.
 */
export type WebhookParser = (source: SourceConfig, secret: string, request: WebhookRequest) => ParsedDelivery;
