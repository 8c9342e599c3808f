/**
 * SQS mirror queue → the shared mirror use case, one record at a time through Powertools'
 * BatchProcessor, strictly in sequence: each pull stages a module of up to the size cap in /tmp
 * and holds it in memory while it is checked, so a batch in parallel would need batch-size times
 * the scratch space, and the event source's maximum concurrency would no longer bound the pulls
 * one registry sees. Bodies are parsed against the message schema by Powertools Parser; a body
 * that does not parse, like a record that throws (a retryable failure), is reported in
 * batchItemFailures and redelivered by SQS until its redrive policy moves it to the dead-letter
 * queue; the others in the batch are deleted.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { parser } from '@aws-lambda-powertools/batch/parser';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { mirrorMessageSchema } from '../../shared/core/schemas.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';
import { parseMirrorMessage } from './records.ts';

export function createMirrorQueueHandler(runtime: AwsRuntime) {
  const { app, deps } = runtime;
  const { logger } = runtime.powertools;
  const processor = new BatchProcessor(EventType.SQS, {
    parser,
    innerSchema: mirrorMessageSchema,
    transformer: 'json',
    logger,
  });

  const reconcile = async (sourceId: string): Promise<void> => {
    const result = await app.reconcile(sourceId);
    logger.info('reconciled', {
      sourceId,
      repositories: result.repositories.length,
      tags: result.tagsSeen,
      queued: result.queued.length,
      failures: result.failures.length,
    });
  };

  const recordHandler = async (record: SQSRecord): Promise<void> => {
    // The parser has replaced the body with the parsed message.
    const message = parseMirrorMessage(record.body as unknown, deps.config, deps.clock.now());
    if (message.kind === 'ignored') {
      logger.info('queue message ignored', { messageId: record.messageId, reason: message.reason });
      return;
    }
    if (message.kind === 'reconcile') return reconcile(message.sourceId);
    const attempt = Number(record.attributes.ApproximateReceiveCount) || 1;
    for (const job of message.jobs) await app.handleMirrorJob(job, { messageId: record.messageId, attempt });
  };

  const handle = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, recordHandler, processor, { context, processInParallel: false });
  return withPowertools(handle, runtime.powertools);
}
