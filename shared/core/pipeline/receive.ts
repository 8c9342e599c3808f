/**
 * Receiving a webhook: find the source, rate-limit it, prove the sender (the source's parser),
 * drop replays, queue the jobs, answer. The reply never waits for a mirror. Senders retry
 * non-2xx answers forever, so everything deliberately ignored is a 2xx; only failed
 * authentication is a 401.
 *
 * Bounds on what one sender can make us queue:
 * - A delivery queues at most `maxJobsPerDelivery` jobs (default 100). The events past it are
 *   dropped, and the 202 says so: `{ code: 'WEBHOOK_EVENTS_CAPPED', accepted, dropped, … }`.
 *   The sender does not retry a 2xx; a scheduled reconcile picks up what was dropped.
 * - Jobs are rate-limited per source as well as deliveries: a bucket of `rateLimitPerMinute`
 *   jobs, refilled at that rate. A delivery whose jobs do not fit is refused whole (429,
 *   `WEBHOOK_RATE_LIMITED`, Retry-After: when they would fit): nothing of it is queued and its
 *   delivery id is not remembered, so the sender's retry is taken.
 */
import { createHash } from 'node:crypto';
import type { MirrorJob } from '../domain.ts';
import { isWasmMirrorError, toWasmMirrorError } from '../errors.ts';
import { metricNames } from '../metrics.ts';
import { WebhookReceiver } from '../sources/receiver.ts';
import type { IgnoredEvent, ParsedDelivery, SourceConfig, WebhookRequestHead } from '../sources/types.ts';
import { storageKeys } from '../storage-keys.ts';
import type { PipelineDeps } from './context.ts';

export interface WebhookHttpRequest {
  sourceId: string;
  /** Secret path segment of `/hooks/<id>/<token>`. */
  pathToken?: string;
  /** Header names in any case. */
  headers: Readonly<Record<string, string | undefined>>;
  body: Uint8Array;
}

export interface WebhookHttpResponse {
  status: number;
  headers?: Record<string, string>;
  body: {
    code?: string;
    message?: string;
    /** Jobs queued. */
    accepted?: number;
    /** Jobs past the per-delivery cap, not queued (with code WEBHOOK_EVENTS_CAPPED). */
    dropped?: number;
    duplicate?: boolean;
    /** Events deliberately ignored, the first `maxJobsPerDelivery` of them. */
    ignored?: IgnoredEvent[];
    /** Ignored events left out of `ignored`. */
    ignoredOmitted?: number;
  };
}

/** A delivery before its body is read: what the entry point asks `admit`. */
export type WebhookHttpHead = Omit<WebhookHttpRequest, 'body'>;

/** Read the body (at most `maxBodyBytes`), or answer `response` without reading it. */
export type WebhookAdmission =
  | { admitted: true; maxBodyBytes: number }
  | { admitted: false; response: WebhookHttpResponse };

/** Receives one delivery; `admit` tells an entry point that streams bodies whether to read one. */
export interface WebhookEndpoint {
  (req: WebhookHttpRequest): Promise<WebhookHttpResponse>;
  /**
   * Source, secret and the proof the head carries (everything but a body HMAC), checked before
   * a byte of the body is read: a stranger costs no memory.
   */
  admit(head: WebhookHttpHead): Promise<WebhookAdmission>;
}

export interface WebhookReceiverOptions {
  /** @default DEFAULT_MAX_JOBS_PER_DELIVERY (100) */
  maxJobsPerDelivery?: number;
}

export type ReceiverDeps = Pick<
  PipelineDeps,
  'config' | 'store' | 'mirrorQueue' | 'secrets' | 'clock' | 'logger' | 'metrics'
>;

const STATUS_BY_CODE: Record<string, number> = {
  WEBHOOK_UNAUTHENTICATED: 401,
  WEBHOOK_MALFORMED: 400,
  WEBHOOK_TOO_LARGE: 413,
  WEBHOOK_UNKNOWN_SOURCE: 404,
};

export function createWebhookReceiver(
  deps: ReceiverDeps,
  options: WebhookReceiverOptions = {},
): WebhookEndpoint {
  // Rate limit, parse and an in-memory replay check (which also absorbs concurrent floods);
  // the durable delivery marker below covers restarts and other instances.
  const receiver = new WebhookReceiver({
    clock: deps.clock,
    ...(options.maxJobsPerDelivery === undefined ? {} : { maxJobsPerDelivery: options.maxJobsPerDelivery }),
  });
  const outcome = (source: string, result: string) =>
    deps.metrics.count(metricNames.webhooks, { source, outcome: result });

  /** The source and its secret, or the answer that refuses the delivery. */
  const sourceOf = async (
    sourceId: string,
  ): Promise<{ source: SourceConfig; secret: string } | { refused: WebhookHttpResponse }> => {
    const source = deps.config.sources.find((s) => s.id === sourceId);
    if (source === undefined) {
      outcome('unknown', 'unknown-source');
      return { refused: reply(404, 'WEBHOOK_UNKNOWN_SOURCE', 'no such webhook source') };
    }
    const secret = await loadSecret(deps, source);
    if (secret === undefined) {
      outcome(source.id, 'no-secret');
      deps.logger.error('webhook source has no secret configured; refusing deliveries', {
        sourceId: source.id,
        secretName: source.webhookSecretEnv,
      });
      return { refused: reply(503, 'CONFIG_INVALID', 'this source has no webhook secret configured') };
    }
    return { source, secret };
  };

  const refusal = (source: SourceConfig, err: unknown): WebhookHttpResponse => {
    const e = toWasmMirrorError(err, 'WEBHOOK_MALFORMED');
    if (e.code === 'WEBHOOK_RATE_LIMITED') {
      outcome(source.id, 'rate-limited');
      return {
        ...reply(429, e.code, 'too many deliveries from this source'),
        headers: { 'retry-after': String(e.retryAfterSeconds ?? 60) },
      };
    }
    const status = STATUS_BY_CODE[e.code] ?? 400;
    outcome(source.id, e.code === 'WEBHOOK_UNAUTHENTICATED' ? 'unauthenticated' : 'rejected');
    deps.logger.warn('webhook refused', { sourceId: source.id, code: e.code, status });
    // Authentication failures say nothing more than that.
    return reply(status, e.code, status === 401 ? 'authentication failed' : e.message);
  };

  const receive = async (req: WebhookHttpRequest): Promise<WebhookHttpResponse> => {
    const found = await sourceOf(req.sourceId);
    if ('refused' in found) return found.refused;
    const { source, secret } = found;

    let parsed: ParsedDelivery & { duplicate: boolean };
    try {
      parsed = receiver.receive(source, secret, { ...headOf(req, deps), body: req.body });
    } catch (err) {
      return refusal(source, err);
    }

    for (const ignored of parsed.ignored) {
      deps.metrics.count(metricNames.webhookEventsIgnored, { source: source.id, reason: ignored.reason });
    }
    const marker =
      parsed.deliveryId === undefined ? undefined : storageKeys.deliveryMarker(source.id, parsed.deliveryId);
    const cap = receiver.jobsPerDelivery(source);
    const jobs = parsed.jobs.slice(0, cap);
    const dropped = parsed.jobs.length - jobs.length;
    let spent = 0;
    try {
      if (parsed.duplicate || (marker !== undefined && (await deps.store.head(marker)) !== undefined)) {
        outcome(source.id, 'duplicate');
        return { status: 200, body: { duplicate: true, accepted: 0 } };
      }
      const retryAfter = receiver.takeJobs(source, jobs.length);
      if (retryAfter !== undefined) {
        // Refused whole: the sender retries it, and the replay check must let that retry in.
        receiver.dedupe.forget(source.id, parsed.deliveryId);
        outcome(source.id, 'jobs-rate-limited');
        deps.logger.warn('webhook refused: too many jobs from this source', {
          sourceId: source.id,
          jobs: jobs.length,
          retryAfterSeconds: retryAfter,
        });
        return {
          status: 429,
          headers: { 'retry-after': String(retryAfter) },
          body: {
            code: 'WEBHOOK_RATE_LIMITED',
            message: `this delivery's ${jobs.length} jobs are over this source's ${source.rateLimitPerMinute} jobs per minute; nothing was queued, retry later`,
            accepted: 0,
          },
        };
      }
      spent = jobs.length;
      for (const job of jobs) {
        const dedupeId = jobDedupeId(job);
        await deps.mirrorQueue.send(job, dedupeId === undefined ? {} : { dedupeId });
      }
    } catch (err) {
      // Nothing is lost: the sender retries a 503, and the replay check must let that retry in.
      // Jobs sent before the failure are sent again under the same dedupe id, so queued once.
      receiver.returnJobs(source, spent);
      receiver.dedupe.forget(source.id, parsed.deliveryId);
      outcome(source.id, 'queue-failure');
      deps.logger.error('could not queue the delivery; the sender will retry', {
        sourceId: source.id,
        error: toWasmMirrorError(err).message,
      });
      return reply(503, 'QUEUE_FAILURE', 'could not queue the delivery, retry later');
    }
    // Marked only after queueing: a failed enqueue must leave the sender's retry welcome.
    if (marker !== undefined) await markDelivered(deps, marker);
    outcome(source.id, jobs.length > 0 ? 'accepted' : 'ignored');
    if (dropped > 0) deps.metrics.count(metricNames.webhookJobsDropped, { source: source.id }, dropped);
    deps.logger.info('webhook accepted', {
      sourceId: source.id,
      deliveryId: parsed.deliveryId,
      jobs: jobs.length,
      ...(dropped > 0 ? { dropped } : {}),
      ignored: parsed.ignored.length,
    });
    const shownIgnored = parsed.ignored.slice(0, Math.max(cap, 1));
    const ignoredOmitted = parsed.ignored.length - shownIgnored.length;
    return {
      status: jobs.length > 0 ? 202 : 200,
      body: {
        ...(dropped > 0
          ? {
              code: 'WEBHOOK_EVENTS_CAPPED',
              message: `a delivery queues at most ${cap} jobs: ${jobs.length} accepted, ${dropped} dropped`,
            }
          : {}),
        accepted: jobs.length,
        ...(dropped > 0 ? { dropped } : {}),
        ignored: shownIgnored,
        ...(ignoredOmitted > 0 ? { ignoredOmitted } : {}),
      },
    };
  };

  const admit = async (head: WebhookHttpHead): Promise<WebhookAdmission> => {
    const found = await sourceOf(head.sourceId);
    if ('refused' in found) return { admitted: false, response: found.refused };
    try {
      const admission = receiver.admit(found.source, found.secret, headOf(head, deps));
      return { admitted: true, maxBodyBytes: admission.maxBodyBytes };
    } catch (err) {
      return { admitted: false, response: refusal(found.source, err) };
    }
  };

  return Object.assign(receive, { admit });
}

function headOf(req: WebhookHttpHead, deps: ReceiverDeps): WebhookRequestHead {
  return {
    headers: lowercaseHeaders(req.headers),
    ...(req.pathToken === undefined ? {} : { pathToken: req.pathToken }),
    receivedAt: deps.clock.now(),
  };
}

/**
 * A sender's retry of the same delivery is queued once. Different deliveries of the same
 * reference are not merged here: a tag moved A → B → A within the window must be mirrored again
 * (the mirror itself skips what is already listed without pulling).
 */
export function jobDedupeId(job: MirrorJob): string | undefined {
  if (job.deliveryId === undefined) return undefined;
  return createHash('sha256')
    .update(
      `${job.sourceId}\n${job.deliveryId}\n${job.registry}/${job.repository}\n${job.tag ?? ''}\n${job.digest ?? ''}`,
    )
    .digest('hex');
}

async function markDelivered(deps: ReceiverDeps, key: string): Promise<void> {
  try {
    await deps.store.create(key, new Uint8Array(0), { contentType: 'application/octet-stream' });
  } catch (err) {
    if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) {
      deps.logger.warn('could not record delivery id', { error: toWasmMirrorError(err).message });
    }
  }
}

async function loadSecret(deps: ReceiverDeps, source: SourceConfig): Promise<string | undefined> {
  if (source.webhookSecretEnv === undefined) return undefined;
  const value = await deps.secrets.get(source.webhookSecretEnv);
  return value === undefined || value === '' ? undefined : value;
}

function lowercaseHeaders(headers: WebhookHttpRequest['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined) out[k.toLowerCase()] = v;
  return out;
}

function reply(status: number, code: string, message: string): WebhookHttpResponse {
  return { status, body: { code, message } };
}
