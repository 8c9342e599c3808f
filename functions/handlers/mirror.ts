/**
 * SQS mirror queue → the shared mirror handler, one record at a time through Powertools'
 * BatchProcessor. A record that throws (a retryable failure) is reported in batchItemFailures and
 * redelivered by SQS until its redrive policy moves it to the dead-letter queue; the others in
 * the batch are deleted.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { createMirrorHandler } from '../../shared/pipeline/mirror.ts';
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

  const recordHandler = async (record: SQSRecord): Promise<void> => {
    const message = parseMirrorMessage(record.body, deps.config, deps.clock.now());
    if (message.kind === 'ignored') {
      logger.info('queue message ignored', { messageId: record.messageId, reason: message.reason });
      return;
    }
    const attempt = Number(record.attributes.ApproximateReceiveCount) || 1;
    for (const job of message.jobs) await mirror(job, { messageId: record.messageId, attempt });
  };

  const handle = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, recordHandler, processor, { context });
  return withPowertools(handle, runtime.powertools);
}
