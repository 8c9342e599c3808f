/**
 * SQS FIFO publish queue → one publish per batch. The queue has one message group, so batches
 * arrive in order and never concurrently; folding a whole batch into one signed manifest keeps
 * the version count (and KMS calls) down when many modules land at once.
 */
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/errors.ts';
import { createPublisher } from '../../shared/pipeline/publish.ts';
import { readLatestManifest } from '../../shared/pipeline/state.ts';
import type { PublishRequest } from '../../shared/ports.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';
import { parsePublishRequest } from './records.ts';

export function createPublishQueueHandler(runtime: AwsRuntime) {
  const { deps } = runtime;
  const { logger } = runtime.powertools;
  const publish = createPublisher(deps);

  const handle = async (event: SQSEvent, _context: Context): Promise<SQSBatchResponse> => {
    const requests: PublishRequest[] = [];
    const malformed: string[] = [];
    for (const record of event.Records) {
      try {
        requests.push(parsePublishRequest(record.body));
      } catch (err) {
        // Reported as failed so it ends in the dead-letter queue for a human, not silently dropped.
        logger.error('malformed publish request', {
          messageId: record.messageId,
          error: toWasmMirrorError(err),
        });
        malformed.push(record.messageId);
      }
    }
    if (requests.length > 0) {
      // A failed publish throws: the whole batch is retried in order, nothing is half-applied.
      const outcome = await publish(requests);
      logger.info('publish done', { ...outcome, requests: requests.length });
      if (outcome.published) deps.metrics.count('manifests_published');
      await recordManifestAge(runtime);
    }
    return { batchItemFailures: malformed.map((id) => ({ itemIdentifier: id })) };
  };
  return withPowertools(handle, runtime.powertools);
}

/**
 * `manifest_age_seconds` after every publish run (scheduled re-signs included) drives the
 * manifest-age alarm: it rises if re-signing stops, and the data stops if publishing does.
 */
async function recordManifestAge(runtime: AwsRuntime): Promise<void> {
  const { deps } = runtime;
  const latest = await readLatestManifest(deps.store);
  if (latest === undefined) return;
  const now = deps.clock.now().getTime();
  deps.metrics.gauge('manifest_age_seconds', Math.max(0, (now - Date.parse(latest.payload.issuedAt)) / 1000));
  deps.metrics.gauge('manifest_expires_in_seconds', (Date.parse(latest.payload.expiresAt) - now) / 1000);
  deps.metrics.gauge('manifest_version', latest.payload.version);
}
