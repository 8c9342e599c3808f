/**
 * Claiming: the one place that picks which ready messages a consumer gets next and leases them.
 * The choice comes from the instance's in-memory index of ready/ (ready-index.ts), so a claim
 * costs the same whether ten or 60,000 messages wait; the lease itself is a rename, as before.
 */
import { readdir, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode } from '../../../platform/files.ts';
import { countEvent, nowMs, type QueueContext } from './context.ts';
import { deadLetter } from './dead-letters.ts';
import {
  type Claimed,
  describeError,
  inflightName,
  type Lease,
  parseInflight,
  parseReady,
  readMessage,
  type StoredMessage,
  unreadableMessage,
} from './layout.ts';
import { reclaim } from './leases.ts';

export interface ClaimOptions {
  /** Most messages to lease. */
  max: number;
  /**
   * FIFO, as an SQS FIFO message group: nothing while another consumer holds a lease, and a
   * message waiting for a retry holds back the ones after it (a send delay does not).
   */
  fifo: boolean;
  /** Checked between messages, so a stopping consumer leases no more. */
  keepGoing: () => boolean;
}

/** Leases up to `max` visible messages, oldest first, by renaming them into inflight/. */
export async function claim<T>(ctx: QueueContext, options: ClaimOptions): Promise<Claimed<T>[]> {
  const { paths } = ctx;
  if (options.max <= 0) return [];
  const now = nowMs(ctx);
  if (options.fifo && (await foreignLeaseHeld(ctx, now))) return [];
  const index = ctx.readyIndex;
  await index.refresh(now, options.max);
  const claimed: Claimed<T>[] = [];
  while (claimed.length < options.max && options.keepGoing()) {
    const parsed = index.take(now, options.fifo);
    if (parsed === undefined) break;
    const name = parsed.name;
    const attempt = parsed.attempts + 1;
    const file = inflightName(parsed.seq, attempt, now + ctx.visibilityTimeoutMs, ctx.owner);
    try {
      await rename(join(paths.ready, name), join(paths.inflight, file));
    } catch (err) {
      // Another consumer claimed it first (the index had not seen that yet).
      if (errnoCode(err) === 'ENOENT') continue;
      // Still in ready/: keep it claimable.
      index.add(name);
      throw err;
    }
    const lease: Lease = { seq: parsed.seq, attempt, file };
    let message: StoredMessage<T>;
    try {
      message = await readMessage<T>(join(paths.inflight, file), parsed.seq);
    } catch (err) {
      await deadLetter(ctx, lease, unreadableMessage<T>(parsed.seq, now), {
        code: 'STATE_CORRUPT',
        message: `unreadable message file: ${describeError(err).message}`,
      });
      continue;
    }
    countEvent(ctx, 'delivered');
    claimed.push({ lease, message });
  }
  return claimed;
}

/** FIFO: a message leased by another live consumer holds back the group. */
async function foreignLeaseHeld(ctx: QueueContext, now: number): Promise<boolean> {
  const names = await readdir(ctx.paths.inflight);
  if (names.length === 0) return false;
  await reclaim(ctx, now);
  for (const name of await readdir(ctx.paths.inflight)) {
    const parsed = parseInflight(name);
    if (parsed !== undefined && parsed.owner !== ctx.owner) return true;
  }
  return false;
}

/** Counts ready/ by visibility now: visible, or waiting for a delay or a backoff. */
export async function countReady(
  ctx: QueueContext,
  now: number,
): Promise<{ ready: number; delayed: number }> {
  let ready = 0;
  let delayed = 0;
  for (const name of await readdir(ctx.paths.ready)) {
    const parsed = parseReady(name);
    if (parsed === undefined) continue;
    if (parsed.notBefore > now) delayed++;
    else ready++;
  }
  return { ready, delayed };
}

export async function countInflight(ctx: QueueContext): Promise<number> {
  return (await readdir(ctx.paths.inflight)).filter((n) => parseInflight(n) !== undefined).length;
}
