/**
 * Receiving a webhook: find the source, rate-limit it, prove the sender (the source's parser),
 * drop replays, queue the jobs, answer. The reply never waits for a mirror. Senders retry
 * non-2xx answers forever, so everything deliberately ignored is a 2xx; only failed
 * authentication is a 401.
 */
import { createHash } from 'node:crypto';
import type { MirrorJob } from '../domain.ts';
import { isWasmMirrorError, toWasmMirrorError } from '../errors.ts';
import { metricNames } from '../metrics.ts';
import { WebhookReceiver } from '../sources/receiver.ts';
import type { IgnoredEvent, ParsedDelivery, SourceConfig } from '../sources/types.ts';
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
    accepted?: number;
    duplicate?: boolean;
    ignored?: IgnoredEvent[];
  };
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
): (req: WebhookHttpRequest) => Promise<WebhookHttpResponse> {
  // Rate limit, parse and an in-memory replay check (which also absorbs concurrent floods);
  // the durable delivery marker below covers restarts and other instances.
  const receiver = new WebhookReceiver({ clock: deps.clock });
  const outcome = (source: string, result: string) =>
    deps.metrics.count(metricNames.webhooks, { source, outcome: result });

  return async (req) => {
    const source = deps.config.sources.find((s) => s.id === req.sourceId);
    if (source === undefined) {
      outcome('unknown', 'unknown-source');
      return reply(404, 'WEBHOOK_UNKNOWN_SOURCE', 'no such webhook source');
    }
    const secret = await loadSecret(deps, source);
    if (secret === undefined) {
      outcome(source.id, 'no-secret');
      deps.logger.error('webhook source has no secret configured; refusing deliveries', {
        sourceId: source.id,
        secretName: source.webhookSecretEnv,
      });
      return reply(503, 'CONFIG_INVALID', 'this source has no webhook secret configured');
    }

    let parsed: ParsedDelivery & { duplicate: boolean };
    try {
      parsed = receiver.receive(source, secret, {
        headers: lowercaseHeaders(req.headers),
        body: req.body,
        ...(req.pathToken === undefined ? {} : { pathToken: req.pathToken }),
        receivedAt: deps.clock.now(),
      });
    } catch (err) {
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
    }

    for (const ignored of parsed.ignored) {
      deps.metrics.count(metricNames.webhookEventsIgnored, { source: source.id, reason: ignored.reason });
    }
    const marker =
      parsed.deliveryId === undefined ? undefined : storageKeys.deliveryMarker(source.id, parsed.deliveryId);
    try {
      if (parsed.duplicate || (marker !== undefined && (await deps.store.head(marker)) !== undefined)) {
        outcome(source.id, 'duplicate');
        return { status: 200, body: { duplicate: true, accepted: 0 } };
      }
      for (const job of parsed.jobs) {
        const dedupeId = jobDedupeId(job);
        await deps.mirrorQueue.send(job, dedupeId === undefined ? {} : { dedupeId });
      }
    } catch (err) {
      // Nothing is lost: the sender retries a 503, and the replay check must let that retry in.
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
    outcome(source.id, parsed.jobs.length > 0 ? 'accepted' : 'ignored');
    deps.logger.info('webhook accepted', {
      sourceId: source.id,
      deliveryId: parsed.deliveryId,
      jobs: parsed.jobs.length,
      ignored: parsed.ignored.length,
    });
    return {
      status: parsed.jobs.length > 0 ? 202 : 200,
      body: { accepted: parsed.jobs.length, ignored: parsed.ignored },
    };
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
