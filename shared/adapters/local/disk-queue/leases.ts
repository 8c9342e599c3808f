/**
 * What happens to a lease after its claim: the handler succeeded (ack), failed (back to ready/
 * after a backoff, or to the dead-letter area on the last attempt), or never finished (taken back
 * once the lease expires or its owner is gone).
 */
import { readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { backoffDelay } from '../../../core/backoff.ts';
import { WasmMirrorError } from '../../../core/errors.ts';
import { errnoCode } from '../../../platform/files.ts';
import { countEvent, nowMs, type QueueContext } from './context.ts';
import { deadLetter } from './dead-letters.ts';
import {
  type Claimed,
  deadName,
  describeError,
  exists,
  type Lease,
  ownerGone,
  parseInflight,
  readyName,
  type StoredMessage,
  unreadableMessage,
} from './layout.ts';

export async function ack(ctx: QueueContext, lease: Lease): Promise<void> {
  try {
    await unlink(join(ctx.paths.inflight, lease.file));
    countEvent(ctx, 'succeeded');
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    ctx.logger.warn('queue lease expired before the handler finished; the message will be delivered again', {
      queue: ctx.name,
      messageId: lease.seq,
      attempt: lease.attempt,
    });
  }
}

export async function fail<T>(ctx: QueueContext, item: Claimed<T>, err: unknown): Promise<void> {
  const error = describeError(err);
  const { lease } = item;
  countEvent(ctx, 'failed');
  const wait = retryDelayMs(ctx, lease.attempt, err);
  if (lease.attempt >= ctx.maxAttempts) {
    try {
      await deadLetter(ctx, lease, item.message, error);
      return;
    } catch (e) {
      // No room for the dead letter (a full disk): a rename needs none, so the message waits in
      // ready/ and its next failure tries the dead-letter area again.
      ctx.logger.error('queue could not dead-letter a message; it will be delivered again', {
        queue: ctx.name,
        messageId: lease.seq,
        attempt: lease.attempt,
        retryInMs: wait,
        error: describeError(e),
      });
    }
  } else {
    ctx.logger.warn('queue handler failed; will retry', {
      queue: ctx.name,
      messageId: lease.seq,
      attempt: lease.attempt,
      retryInMs: wait,
      error,
    });
  }
  const name = readyName(lease.seq, lease.attempt, nowMs(ctx) + wait);
  try {
    await rename(join(ctx.paths.inflight, lease.file), join(ctx.paths.ready, name));
    ctx.readyIndex.add(name);
  } catch (e) {
    // The lease expired meanwhile and was taken back: it is already waiting for redelivery.
    if (errnoCode(e) !== 'ENOENT') throw e;
  }
}

/** An error that says how long to wait (a registry's Retry-After) sets the floor of the delay. */
function retryDelayMs(ctx: QueueContext, attempt: number, err: unknown): number {
  const retryAfterMs =
    err instanceof WasmMirrorError && err.retryAfterSeconds !== undefined
      ? err.retryAfterSeconds * 1000
      : undefined;
  return backoffDelay(ctx.backoff, attempt, { retryAfterMs, random: ctx.random });
}

/**
 * Takes back leases that expired or whose consumer is gone: back to ready/ for their next
 * delivery, or to the dead-letter area when that delivery was the last.
 */
export async function reclaim(ctx: QueueContext, now: number): Promise<void> {
  const { paths } = ctx;
  for (const name of await readdir(paths.inflight)) {
    const parsed = parseInflight(name);
    if (parsed === undefined) continue;
    const gone = ownerGone(parsed);
    if (parsed.leaseUntil > now && !gone) continue;
    const lease: Lease = { seq: parsed.seq, attempt: parsed.attempt, file: name };
    const path = join(paths.inflight, name);
    if (await exists(join(paths.dead, deadName(parsed.seq)))) {
      // Crashed between writing the dead letter and removing the lease.
      await unlink(path).catch(() => {});
      continue;
    }
    countEvent(ctx, 'reclaimed');
    const why = gone ? 'its consumer stopped' : 'its visibility timeout expired';
    if (parsed.attempt >= ctx.maxAttempts) {
      let message: StoredMessage<unknown>;
      try {
        message = JSON.parse(await readFile(path, 'utf8')) as StoredMessage<unknown>;
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        message = unreadableMessage(parsed.seq, now);
      }
      await deadLetter(ctx, lease, message, {
        code: 'QUEUE_FAILURE',
        message: `delivery ${parsed.attempt} did not finish: ${why}`,
      });
      continue;
    }
    ctx.logger.warn('queue lease taken back; the message will be delivered again', {
      queue: ctx.name,
      messageId: parsed.seq,
      attempt: parsed.attempt,
      reason: why,
    });
    const readyFile = readyName(parsed.seq, parsed.attempt, now);
    try {
      await rename(path, join(paths.ready, readyFile));
      ctx.readyIndex.add(readyFile);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
