/**
 * SQS mirror queue → the shared mirror handler, one record at a time through Powertools'
 * BatchProcessor, strictly in sequence: each pull stages a module of up to the size cap in /tmp
 * and holds it in memory while it is checked, so a batch in parallel would need batch-size times
 * the scratch space, and the event source's maximum concurrency would no longer bound the pulls
 * one registry sees. A record that throws (a retryable failure) is reported in batchItemFailures and
 * redelivered by SQS until its redrive policy moves it to the dead-letter queue; the others in
 * the batch are deleted.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createMirrorHandler } from '../../shared/core/pipeline/mirror.ts';
import { reconcileSource } from '../../shared/core/pipeline/reconcile.ts';
import { listedTags } from '../../shared/core/pipeline/state.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';
import { parseMirrorMessage } from './records.ts';

export function createMirrorQueueHandler(runtime: AwsRuntime) {
  const { deps } = runtime;
  const { logger } = runtime.powertools;
  const mirror = createMirrorHandler({
    ...deps,
    onPermanentFailure: (job, error) => {
      // Acknowledged, not retried: the same bytes would fail the same way. The log is the record.
      logger.warn('mirror job rejected', { job, code: error.code, message: error.message });
    },
  });
  const processor = new BatchProcessor(EventType.SQS);
  // Per container: a tag the mirror rejected is not queued again by every scheduled reconcile.
  const lastQueued = new Map<string, Map<string, string>>();

  const reconcile = async (sourceId: string): Promise<void> => {
    const source = deps.config.sources.find((s) => s.id === sourceId)!;
    const queued = lastQueued.get(sourceId) ?? new Map<string, string>();
    lastQueued.set(sourceId, queued);
    const credentials =
      source.credentials === undefined ? await deps.registryCredentials?.(source) : undefined;
    const result = await reconcileSource(source, {
      puller: deps.puller,
      queue: deps.mirrorQueue,
      listKnown: () => listedTags(deps.store),
      clock: deps.clock,
      logger: deps.logger,
      metrics: deps.metrics,
      secrets: deps.secrets,
      lastQueued: queued,
      ...(credentials === undefined ? {} : { credentials }),
    });
    logger.info('reconciled', {
      sourceId,
      repositories: result.repositories.length,
      tags: result.tagsSeen,
      queued: result.queued.length,
      failures: result.failures.length,
    });
  };

  const recordHandler = async (record: SQSRecord): Promise<void> => {
    const message = parseMirrorMessage(record.body, deps.config, deps.clock.now());
    if (message.kind === 'ignored') {
      logger.info('queue message ignored', { messageId: record.messageId, reason: message.reason });
      return;
    }
    if (message.kind === 'reconcile') return reconcile(message.sourceId);
    const attempt = Number(record.attributes.ApproximateReceiveCount) || 1;
    for (const job of message.jobs) await mirror(job, { messageId: record.messageId, attempt });
  };

  const handle = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, recordHandler, processor, { context, processInParallel: false });
  return withPowertools(handle, runtime.powertools);
}
