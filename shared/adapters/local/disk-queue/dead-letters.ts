/**
 * The dead-letter area: messages that used up their deliveries, each kept with its last error
 * until an operator redrives or deletes it, or it expires (`deadLetterRetentionMs`).
 *
 * A dead letter's file is named by its message id and its mtime is set to the moment it died,
 * so expiry needs a stat per file, and a page of the newest needs only the names and the files on
 * that page: thousands of dead letters are never all read at once.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, stat, unlink, utimes } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, fsyncDirBestEffort, writeNewFile } from '../../../platform/files.ts';
import { countEvent, nowMs, type QueueContext } from './context.ts';
import {
  deadName,
  describeError,
  type Lease,
  queueError,
  readyName,
  SEQ,
  type StoredMessage,
} from './layout.ts';
import type { DeadLetter, DeadLetterError, DeadLetterPage } from './types.ts';

/**
 * Writes the dead letter, then drops the lease. A crash between the two leaves both; recovery
 * sees the dead letter and drops the lease then.
 */
export async function deadLetter<T>(
  ctx: QueueContext,
  lease: Lease,
  message: StoredMessage<T>,
  lastError: DeadLetterError,
): Promise<void> {
  const { paths } = ctx;
  const deadAt = ctx.clock.now();
  const dead: DeadLetter<T> = {
    messageId: message.id,
    body: message.body,
    attempts: lease.attempt,
    sentAt: message.sentAt,
    deadAt: deadAt.toISOString(),
    lastError,
  };
  if (message.dedupeId !== undefined) dead.dedupeId = message.dedupeId;
  const tmp = join(paths.tmp, `dead-${lease.seq}-${randomBytes(4).toString('hex')}.json`);
  try {
    await writeNewFile(tmp, JSON.stringify(dead));
    await utimes(tmp, deadAt, deadAt);
    await rename(tmp, join(paths.dead, deadName(lease.seq)));
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  // From here the dead letter exists: a failed flush must not make the caller retry the message.
  await fsyncDirBestEffort(paths.dead);
  try {
    await unlink(join(paths.inflight, lease.file));
  } catch (err) {
    // Recovery drops a lease whose dead letter exists, so the message is dead-lettered either way.
    if (errnoCode(err) !== 'ENOENT') {
      ctx.logger.warn('queue could not drop a dead-lettered lease; recovery will', {
        queue: ctx.name,
        messageId: lease.seq,
        error: describeError(err),
      });
    }
  }
  countEvent(ctx, 'dead');
  ctx.logger.error('queue message dead-lettered', {
    queue: ctx.name,
    messageId: lease.seq,
    attempts: lease.attempt,
    error: lastError,
  });
}

/** Ids of the dead letters, oldest first: one listing, no file read. */
export async function deadLetterIds(ctx: QueueContext): Promise<string[]> {
  const ids: string[] = [];
  for (const name of await readdir(ctx.paths.dead)) {
    const id = name.endsWith('.json') ? name.slice(0, -'.json'.length) : '';
    if (SEQ.test(id)) ids.push(id);
  }
  return ids.sort();
}

export async function countDead(ctx: QueueContext): Promise<number> {
  return (await deadLetterIds(ctx)).length;
}

/** One dead letter, or undefined when there is none by that id (or it went meanwhile). */
export async function readDead<T>(ctx: QueueContext, messageId: string): Promise<DeadLetter<T> | undefined> {
  if (!SEQ.test(messageId)) return undefined;
  try {
    return JSON.parse(await readFile(join(ctx.paths.dead, deadName(messageId)), 'utf8')) as DeadLetter<T>;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw queueError(`queue ${ctx.name}: read dead letter ${messageId}`, err);
  }
}

/** Dead letters, oldest first. Reads every one: for small areas and tests; pages otherwise. */
export async function listDead<T>(ctx: QueueContext): Promise<DeadLetter<T>[]> {
  const out: DeadLetter<T>[] = [];
  for (const id of await deadLetterIds(ctx)) {
    const dead = await readDead<T>(ctx, id);
    if (dead !== undefined) out.push(dead);
  }
  return out;
}

/**
 * Newest first by message id (ids start with the send time), `limit` at most, after the
 * `before` cursor (the last id of the previous page). Reads only the files on the page.
 */
export async function listDeadPage<T>(
  ctx: QueueContext,
  options: { limit: number; before?: string },
): Promise<DeadLetterPage<T>> {
  const ids = await deadLetterIds(ctx);
  const before = options.before;
  let end = ids.length;
  if (before !== undefined) {
    // Ids are sorted: binary search for the first id not older than the cursor.
    let lo = 0;
    let hi = ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ids[mid]! < before) lo = mid + 1;
      else hi = mid;
    }
    end = lo;
  }
  const items: DeadLetter<T>[] = [];
  let i = end - 1;
  for (; i >= 0 && items.length < options.limit; i--) {
    // Gone since the listing (redriven or purged by another process): skip it.
    const dead = await readDead<T>(ctx, ids[i]!);
    if (dead !== undefined) items.push(dead);
  }
  const page: DeadLetterPage<T> = { total: ids.length, items };
  if (i >= 0 && items.length > 0) page.next = items[items.length - 1]!.messageId;
  return page;
}

/**
 * Deletes dead letters that died before `cutoffMs` (their file's mtime is their death); returns
 * how many.
 */
export async function deleteDeadBefore(ctx: QueueContext, cutoffMs: number): Promise<number> {
  let removed = 0;
  for (const id of await deadLetterIds(ctx)) {
    const path = join(ctx.paths.dead, deadName(id));
    try {
      if ((await stat(path)).mtimeMs >= cutoffMs) continue;
      await unlink(path);
      removed++;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw queueError(`queue ${ctx.name}: expire dead letter ${id}`, err);
    }
  }
  if (removed > 0) {
    ctx.metrics.count('queue_events_total', { queue: ctx.name, event: 'dead_expired' }, removed);
    ctx.logger.info('queue dead letters expired', { queue: ctx.name, removed });
  }
  return removed;
}

/** Suffix of a dead letter a redrive has claimed and not finished yet. */
const REDRIVING = '.redriving';
/** A claimed dead letter older than this belongs to a redrive that died. */
const ORPHAN_REDRIVE_MS = 60_000;

/**
 * Puts a dead letter back in ready/ with a fresh attempt count; false if there is none by that id.
 * The dead letter is first renamed aside, so of two redrives at once (two commands, or a command
 * and an expiry sweep) exactly one goes ahead. A redrive that dies half-way leaves it aside and
 * recovery puts it back in the dead-letter area; if it died after the message was back in ready/,
 * the message is then delivered and still dead-lettered, which a second redrive delivers again
 * (at least once, never lost).
 */
export async function redrive<T>(ctx: QueueContext, messageId: string): Promise<boolean> {
  const { paths } = ctx;
  if (!SEQ.test(messageId)) return false;
  const deadPath = join(paths.dead, deadName(messageId));
  const claimed = `${deadPath}${REDRIVING}`;
  try {
    await rename(deadPath, claimed);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw queueError(`queue ${ctx.name}: redrive ${messageId}`, err);
  }
  const name = readyName(messageId, 0, nowMs(ctx));
  const tmp = join(paths.tmp, `redrive-${name}`);
  let enqueued = false;
  try {
    const dead = JSON.parse(await readFile(claimed, 'utf8')) as DeadLetter<T>;
    const message: StoredMessage<T> = { v: 1, id: messageId, sentAt: dead.sentAt, body: dead.body };
    if (dead.dedupeId !== undefined) message.dedupeId = dead.dedupeId;
    await writeNewFile(tmp, JSON.stringify(message));
    await rename(tmp, join(paths.ready, name));
    enqueued = true;
    ctx.readyIndex.add(name);
  } catch (err) {
    if (!enqueued) {
      await unlink(tmp).catch(() => {});
      await rename(claimed, deadPath).catch(() => {});
    }
    throw queueError(`queue ${ctx.name}: redrive ${messageId}`, err);
  }
  await fsyncDirBestEffort(paths.ready);
  await unlink(claimed).catch(() => {});
  await fsyncDirBestEffort(paths.dead);
  countEvent(ctx, 'redriven');
  return true;
}

/** Puts back dead letters whose redrive died before the message was back in ready/. */
export async function restoreInterruptedRedrives(ctx: QueueContext, now: number): Promise<void> {
  for (const name of await readdir(ctx.paths.dead)) {
    if (!name.endsWith(REDRIVING)) continue;
    const path = join(ctx.paths.dead, name);
    try {
      // A rename keeps the mtime (the death) and sets the ctime: the moment of the claim.
      if (now - (await stat(path)).ctimeMs < ORPHAN_REDRIVE_MS) continue;
      await rename(path, path.slice(0, -REDRIVING.length));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}

/** Deletes a dead letter for good; false if there is none by that id. */
export async function deleteDead(ctx: QueueContext, messageId: string): Promise<boolean> {
  if (!SEQ.test(messageId)) return false;
  try {
    await unlink(join(ctx.paths.dead, deadName(messageId)));
    return true;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw queueError(`queue ${ctx.name}: delete dead letter ${messageId}`, err);
  }
}
