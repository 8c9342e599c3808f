/**
 * SQS FIFO publish queue → one publish per batch. The queue has one message group, so batches
 * arrive in order and never concurrently; folding a whole batch into one signed manifest keeps
 * the version count (and KMS calls) down when many modules land at once.
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/core/errors.ts';
import { metricNames } from '../../shared/core/metrics.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';
import { parsePublishRequest } from './records.ts';

export function createPublishQueueHandler(runtime: AwsRuntime) {
  const { app, deps } = runtime;
  const { logger } = runtime.powertools;

  const handle = async (event: SQSEvent, _context: Context): Promise<SQSBatchResponse> => {
    const requests: PublishRequest[] = [];
    for (const record of event.Records) {
      try {
        requests.push(parsePublishRequest(record.body));
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
      }
    }
    if (requests.length > 0) {
      // A failed publish (S3, KMS) throws: the whole batch is retried in order, nothing is
      // half-applied, and the function's error alarm fires.
      const outcome = await app.publish(requests);
      logger.info('publish done', { ...outcome, requests: requests.length });
    }
    return { batchItemFailures: [] };
  };
  return withPowertools(handle, runtime.powertools);
}
