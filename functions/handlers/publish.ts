/**
 * SQS FIFO publish queue → one publish per batch. The queue has one message group, so batches
 * arrive in order and never concurrently; folding a whole batch into one signed manifest keeps
 * the version count (and KMS calls) down when many modules land at once.
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/core/errors.ts';
import { createPublisher, type PublishOutcome } from '../../shared/core/pipeline/publish.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';
import { parsePublishRequest } from './records.ts';

export function createPublishQueueHandler(runtime: AwsRuntime) {
  const { deps } = runtime;
  const { logger } = runtime.powertools;
  const publish = createPublisher(deps);

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
        deps.metrics.count('publish_requests_malformed');
      }
    }
    if (requests.length > 0) {
      // A failed publish (S3, KMS) throws: the whole batch is retried in order, nothing is
      // half-applied, and the function's error alarm fires.
      const outcome = await publish(requests);
      logger.info('publish done', { ...outcome, requests: requests.length });
      recordManifestAge(runtime, outcome);
    }
    return { batchItemFailures: [] };
  };
  return withPowertools(handle, runtime.powertools);
}

/**
 * `manifest_age_seconds` after every publish run (scheduled re-signs included) drives the
 * manifest-age alarm: it rises if re-signing stops, and the data stops if publishing does.
 */
function recordManifestAge(runtime: AwsRuntime, manifest: PublishOutcome): void {
  const { deps } = runtime;
  const now = deps.clock.now().getTime();
  deps.metrics.gauge('manifest_age_seconds', Math.max(0, (now - Date.parse(manifest.issuedAt)) / 1000));
  deps.metrics.gauge('manifest_expires_in_seconds', (Date.parse(manifest.expiresAt) - now) / 1000);
  deps.metrics.gauge('manifest_version', manifest.version);
}
