/**
 * SQS mirror queue → the shared mirror use case, one record at a time through Powertools'
 * BatchProcessor, strictly in sequence: each pull stages a module of up to the size cap in /tmp
 * and holds it in memory while it is checked, so a batch in parallel would need batch-size times
 * the scratch space, and the event source's maximum concurrency would no longer bound the pulls
 * one registry sees. Bodies are parsed against the message schema by Powertools Parser; a body
 * that does not parse, like a record that throws (a retryable failure), is reported in
 * batchItemFailures and redelivered by SQS until its redrive policy moves it to the dead-letter
 * queue; the others in the batch are deleted.
 *
 * Registry requests stop at a deadline short of the function's timeout (`MIRROR_RESERVE_MS`
 * before it), so a slow registry fails its own record retryably instead of timing out the
 * invocation with every record in it; records the invocation has no time left for are handed
 * back unstarted. Reconcile runs under the same deadline and is handed back when it is cut short.
 */
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { parser } from '@aws-lambda-powertools/batch/parser';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type { MirrorRunMeta } from '../../shared/core/pipeline/mirror.ts';
import { mirrorMessageSchema } from '../../shared/core/schemas.ts';
import type { AwsRuntime } from '../runtime.ts';
import { invocationBudget, notStarted } from './budget.ts';
import { withPowertools } from './middleware.ts';
import { parseMirrorMessage } from './records.ts';

/**
 * Kept back from the registry: what a pull has fetched is still validated, uploaded and handed
 * to the publisher after its last byte (a module at the 256 MiB cap takes seconds for each), and
 * the failures are reported and the metrics flushed.
 */
export const MIRROR_RESERVE_MS = 30_000;
/** A record is started only with at least this much registry time left before the deadline. */
export const MIRROR_MIN_START_MS = 10_000;

export interface MirrorHandlerOptions {
  /** @default MIRROR_RESERVE_MS */
  reserveMs?: number;
  /** @default MIRROR_MIN_START_MS */
  minStartMs?: number;
}

export function createMirrorQueueHandler(runtime: AwsRuntime, options: MirrorHandlerOptions = {}) {
  const { app, deps } = runtime;
  const { logger } = runtime.powertools;
  const reserveMs = options.reserveMs ?? MIRROR_RESERVE_MS;
  const minStartMs = options.minStartMs ?? MIRROR_MIN_START_MS;
  const processor = new BatchProcessor(EventType.SQS, {
    parser,
    innerSchema: mirrorMessageSchema,
    transformer: 'json',
    logger,
  });

  const reconcile = async (sourceId: string, signal: AbortSignal): Promise<void> => {
    const result = await app.reconcile(sourceId, signal);
    logger.info('reconciled', {
      sourceId,
      repositories: result.repositories.length,
      tags: result.tagsSeen,
      queued: result.queued.length,
      failures: result.failures.length,
    });
    // What was queued stays queued; the redelivery checks the source again from the start.
    if (signal.aborted) {
      throw new WasmMirrorError('TIMEOUT', `reconcile of '${sourceId}' was cut short at the deadline`, {
        cause: signal.reason,
        retryable: true,
      });
    }
  };

  const handle = (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    const budget = invocationBudget(context, reserveMs);
    const recordHandler = async (record: SQSRecord): Promise<void> => {
      if (budget.left() < minStartMs) {
        logger.warn('record handed back unstarted: too little time left', { messageId: record.messageId });
        throw notStarted(reserveMs);
      }
      // The parser has replaced the body with the parsed message.
      const message = parseMirrorMessage(record.body as unknown, deps.config, deps.clock.now());
      if (message.kind === 'ignored') {
        logger.info('queue message ignored', { messageId: record.messageId, reason: message.reason });
        return;
      }
      const deadline = budget.deadline(message.kind === 'reconcile' ? 'reconcile' : 'mirror job');
      try {
        if (message.kind === 'reconcile') return await reconcile(message.sourceId, deadline.signal);
        const meta: MirrorRunMeta = {
          messageId: record.messageId,
          attempt: Number(record.attributes.ApproximateReceiveCount) || 1,
          signal: deadline.signal,
        };
        for (const job of message.jobs) {
          if (deadline.signal.aborted) throw deadline.signal.reason;
          await app.handleMirrorJob(job, meta);
        }
      } finally {
        deadline.dispose();
      }
    };
    // A batch whose every record failed is answered like any other: throwing would fail the
    // invocation (the error alarm is for the function itself failing) and retry them all alike.
    return processPartialResponse(event, recordHandler, processor, {
      context,
      processInParallel: false,
      throwOnFullBatchFailure: false,
    });
  };
  return withPowertools(handle, runtime.powertools);
}
