/**
 * SQS FIFO publish queue → one publish per batch. The queue has one message group, so batches
 * arrive in order and never concurrently; folding a whole batch into one signed manifest keeps
 * the version count (and KMS calls) down when many modules land at once.
 *
 * When that publish fails, the batch is published again one request at a time, in FIFO order,
 * up to the first one that fails: the requests before it are published, and it and every
 * request after it are reported in batchItemFailures, so SQS redelivers them in order and one
 * request that cannot be published holds back only what came after it, until its redrive
 * policy moves it to the dead-letter queue.
 */
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/core/errors.ts';
import { metricNames } from '../../shared/core/metrics.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import type { AwsRuntime } from '../runtime.ts';
import { invocationBudget } from './budget.ts';
import { withPowertools } from './middleware.ts';
import { parsePublishRequest } from './records.ts';

/** Kept back at the end of the invocation: one request at a time stops this long before the timeout. */
export const PUBLISH_RESERVE_MS = 15_000;

export interface PublishHandlerOptions {
  /** @default PUBLISH_RESERVE_MS */
  reserveMs?: number;
}

interface Entry {
  record: SQSRecord;
  /** Undefined for a malformed message, which is dropped. */
  request: PublishRequest | undefined;
}

export function createPublishQueueHandler(runtime: AwsRuntime, options: PublishHandlerOptions = {}) {
  const { app, deps } = runtime;
  const { logger } = runtime.powertools;
  const reserveMs = options.reserveMs ?? PUBLISH_RESERVE_MS;

  const parse = (record: SQSRecord): Entry => {
    try {
      return { record, request: parsePublishRequest(record.body) };
    } catch (err) {
      // Acknowledged, not failed: the queue has one message group, so a message that can never
      // parse would hold back every publish behind it (and, failing with its batch, push good
      // requests into the dead-letter queue). The log line and the metric are the record.
      logger.error('malformed publish request dropped', {
        messageId: record.messageId,
        body: record.body.slice(0, 1024),
        error: toWasmMirrorError(err),
      });
      deps.metrics.count(metricNames.publishRequestsMalformed);
      return { record, request: undefined };
    }
  };

  /** This entry and every one after it, in the order SQS delivered them. */
  const failFrom = (entries: Entry[], index: number): SQSBatchResponse => ({
    batchItemFailures: entries.slice(index).map((e) => ({ itemIdentifier: e.record.messageId })),
  });

  const handle = async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    const budget = invocationBudget(context, reserveMs);
    const entries = event.Records.map(parse);
    const requests = entries.flatMap((e) => (e.request === undefined ? [] : [e.request]));
    if (requests.length === 0) return { batchItemFailures: [] };
    try {
      const outcome = await app.publish(requests);
      logger.info('publish done', { ...outcome, requests: requests.length });
      return { batchItemFailures: [] };
    } catch (err) {
      if (requests.length === 1) {
        logger.error('publish failed; the request stays queued', { error: toWasmMirrorError(err) });
        return failFrom(
          entries,
          entries.findIndex((e) => e.request !== undefined),
        );
      }
      logger.warn('publishing the batch failed; publishing its requests one at a time', {
        requests: requests.length,
        error: toWasmMirrorError(err),
      });
    }
    for (const [index, { record, request }] of entries.entries()) {
      if (request === undefined) continue;
      // Each publish may first wait out the coalescing interval: start one only with time for it.
      if (budget.left() <= deps.config.mirror.publishIntervalMs) {
        logger.warn('requests handed back unpublished: too little time left', {
          messageId: record.messageId,
          requests: entries.length - index,
        });
        return failFrom(entries, index);
      }
      try {
        const outcome = await app.publish([request]);
        logger.info('publish done', { ...outcome, requests: 1, messageId: record.messageId });
      } catch (err) {
        logger.error('publish failed; the request and those after it stay queued', {
          messageId: record.messageId,
          kind: request.kind,
          ...(request.kind === 'record' ? { name: request.record.name, tag: request.record.tag } : {}),
          after: entries.length - index - 1,
          error: toWasmMirrorError(err),
        });
        return failFrom(entries, index);
      }
    }
    return { batchItemFailures: [] };
  };
  return withPowertools(handle, runtime.powertools);
}
