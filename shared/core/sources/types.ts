/**
 * Webhook sources: each `type` in the config names a sender, which declares how it authenticates
 * and parses its payload; together they take (source config, its secret, the raw request) to
 * mirror jobs or a typed rejection.
 */
import type { MirrorJob } from '../domain.ts';
import type { JsonValue } from '../strict-json.ts';

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
  /** Which tags stay listed; overrides the mirror-wide default. */
  retention?: SourceRetention;
}

/** Retention for one repository: see shared/core/pipeline/retention.ts. */
export interface RetentionPolicy {
  /** Keep the newest N tags of a repository (pinned tags not counted). */
  keepTags?: number;
  /** Drop tags listed longer ago than this. */
  maxAgeMs?: number;
  /** Tag globs that are never dropped. */
  pin?: string[];
}

export interface SourceRetention extends RetentionPolicy {
  /** Per repository glob: the first match wins over the source's own policy. */
  overrides?: (RetentionPolicy & { repositories: string[] })[];
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
 * How a sender proves a delivery is its own; the receiver checks it before any payload is read.
 * A source whose secret is empty authenticates nobody.
 */
export type SenderAuth =
  | {
      /** A static secret in a header, as `Bearer <secret>`. */
      kind: 'static-header';
      /** The secret verbatim is accepted too (senders that send a configured value as is). */
      bare: boolean;
      /** `Authorization: Basic` whose password is the secret is accepted too. */
      basic?: boolean;
      /** The header is the source's `webhookHeader` (default `authorization`), not always `authorization`. */
      sourceHeader?: boolean;
    }
  | {
      /** A hex HMAC-SHA256 of the raw body bytes, in `header`. */
      kind: 'body-hmac';
      /** Lowercase header name. */
      header: string;
      /** The header's whole (trimmed) value; its first group is the hex digest. */
      signature: RegExp;
      /** The header may carry the secret itself instead of an HMAC. */
      orSecret?: boolean;
    }
  | {
      /** The secret as the last path segment (`/hooks/<id>/<token>`), for senders that add no header. */
      kind: 'path-token';
    };

/** A delivery whose sender is proven and whose body has been parsed as strict JSON. */
export interface AuthenticatedDelivery {
  source: SourceConfig;
  request: WebhookRequest;
  /** Undefined only for an empty body from a sender that accepts one. */
  body: JsonValue | undefined;
}

/** One kind of sender: how it authenticates, and how its payload becomes jobs. */
export interface WebhookSender {
  auth: SenderAuth;
  /** An empty body is no JSON error (CloudEvents binary mode may carry no data). */
  acceptsEmptyBody?: boolean;
  /** Largest body this sender's deliveries may have. @default DEFAULT_MAX_BODY_BYTES (1 MiB) */
  maxBodyBytes?: number;
  /** Knows the payload shape only; throws WEBHOOK_MALFORMED for a body that is not one. */
  parse(delivery: AuthenticatedDelivery): ParsedDelivery;
}

/** What an entry point knows of a delivery before reading its body. */
export type WebhookRequestHead = Omit<WebhookRequest, 'body'>;

/** The answer to a delivery's head: how much body to read, and whether the head proved the sender. */
export interface DeliveryAdmission {
  /** The largest body this source's sender accepts; a longer one is refused unread. */
  maxBodyBytes: number;
  /** False for a sender that signs its body: the proof can only be checked once the body is read. */
  authenticated: boolean;
}

/**
 * The whole reading of one delivery. Throws WasmMirrorError with WEBHOOK_UNAUTHENTICATED (401),
 * WEBHOOK_MALFORMED (400) or WEBHOOK_TOO_LARGE (413); anything else it returns, including
 * events deliberately ignored.
 */
export type WebhookParser = (source: SourceConfig, secret: string, request: WebhookRequest) => ParsedDelivery;
