/**
 * The dead-letter area: messages that used up their deliveries, each kept with its last error
 * until an operator redrives or deletes it.
 */
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { errnoCode, fsyncDir, writeNewFile } from '../../../platform/files.ts';
import { countEvent, nowMs, type QueueContext } from './context.ts';
import { deadName, type Lease, queueError, readyName, SEQ, type StoredMessage } from './layout.ts';
import type { DeadLetter, DeadLetterError } from './types.ts';

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
  const dead: DeadLetter<T> = {
    messageId: message.id,
    body: message.body,
    attempts: lease.attempt,
    sentAt: message.sentAt,
    deadAt: ctx.clock.now().toISOString(),
    lastError,
  };
  if (message.dedupeId !== undefined) dead.dedupeId = message.dedupeId;
  const tmp = join(paths.tmp, `dead-${lease.seq}-${randomBytes(4).toString('hex')}.json`);
  try {
    await writeNewFile(tmp, JSON.stringify(dead));
    await rename(tmp, join(paths.dead, deadName(lease.seq)));
    await fsyncDir(paths.dead);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await unlink(join(paths.inflight, lease.file)).catch((err) => {
    if (errnoCode(err) !== 'ENOENT') throw err;
  });
  countEvent(ctx, 'dead');
  ctx.logger.error('queue message dead-lettered', {
    queue: ctx.name,
    messageId: lease.seq,
    attempts: lease.attempt,
    error: lastError,
  });
}

export async function countDead(ctx: QueueContext): Promise<number> {
  return (await readdir(ctx.paths.dead)).filter((n) => n.endsWith('.json')).length;
}

/** Dead letters, oldest first. */
export async function listDead<T>(ctx: QueueContext): Promise<DeadLetter<T>[]> {
  const out: DeadLetter<T>[] = [];
  for (const name of (await readdir(ctx.paths.dead)).sort()) {
    if (!name.endsWith('.json')) continue;
    try {
      out.push(JSON.parse(await readFile(join(ctx.paths.dead, name), 'utf8')) as DeadLetter<T>);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw queueError(`queue ${ctx.name}: read dead letter ${name}`, err);
    }
  }
  return out;
}

/** Puts a dead letter back in ready/ with a fresh attempt count; false if there is none by that id. */
export async function redrive<T>(ctx: QueueContext, messageId: string): Promise<boolean> {
  const { paths } = ctx;
  if (!SEQ.test(messageId)) return false;
  const deadPath = join(paths.dead, deadName(messageId));
  let dead: DeadLetter<T>;
  try {
    dead = JSON.parse(await readFile(deadPath, 'utf8')) as DeadLetter<T>;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return false;
    throw queueError(`queue ${ctx.name}: redrive ${messageId}`, err);
  }
  const message: StoredMessage<T> = { v: 1, id: messageId, sentAt: dead.sentAt, body: dead.body };
  if (dead.dedupeId !== undefined) message.dedupeId = dead.dedupeId;
  const name = readyName(messageId, 0, nowMs(ctx));
  const tmp = join(paths.tmp, `redrive-${name}`);
  try {
    await writeNewFile(tmp, JSON.stringify(message));
    await rename(tmp, join(paths.ready, name));
    await fsyncDir(paths.ready);
    await unlink(deadPath);
    await fsyncDir(paths.dead);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw queueError(`queue ${ctx.name}: redrive ${messageId}`, err);
  }
  countEvent(ctx, 'redriven');
  return true;
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
