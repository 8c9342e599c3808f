/**
 * Sending: a message is written and fsynced under tmp/, then renamed into ready/. A dedupe id is
 * claimed in between by hard-linking the staged file under dedupe/, so from that moment the send
 * completes even if its sender dies: housekeeping finishes it.
 */
import { createHash } from 'node:crypto';
import { link, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { WasmMirrorError } from '../../../core/errors.ts';
import type { SendOptions } from '../../../core/ports.ts';
import { errnoCode, fsyncDir, writeNewFile } from '../../../platform/files.ts';
import { countEvent, nowMs, type QueueContext } from './context.ts';
import { nextSeq, parseReady, queueError, readyName, type StoredMessage } from './layout.ts';

/** Sender temp files older than this belong to a sender that died. */
const ORPHAN_TEMP_MS = 60_000;

/** Resolves once the message is durable in ready/: true, or false when dropped as a duplicate. */
export async function sendMessage<T>(ctx: QueueContext, body: T, options: SendOptions): Promise<boolean> {
  const { paths } = ctx;
  const delayMs = Math.max(0, Math.round((options.delaySeconds ?? 0) * 1000));
  if (!Number.isFinite(delayMs)) throw new WasmMirrorError('QUEUE_FAILURE', 'delaySeconds must be finite');
  const now = nowMs(ctx);
  const seq = nextSeq(now);
  const message: StoredMessage<T> = { v: 1, id: seq, sentAt: new Date(now).toISOString(), body };
  if (options.dedupeId !== undefined) message.dedupeId = options.dedupeId;
  let data: string;
  try {
    if (body === undefined) throw new Error('body is undefined');
    data = JSON.stringify(message);
  } catch (err) {
    throw new WasmMirrorError('QUEUE_FAILURE', `queue ${ctx.name}: message body is not JSON-serialisable`, {
      cause: err,
    });
  }

  const name = readyName(seq, 0, now + delayMs);
  const tmpPath = join(paths.tmp, name);
  let marker: string | undefined;
  let enqueued = false;
  try {
    await writeNewFile(tmpPath, data);
    if (options.dedupeId !== undefined) {
      marker = await claimDedupe(ctx, tmpPath, options.dedupeId);
      if (marker === undefined) {
        await unlink(tmpPath).catch(() => {});
        countEvent(ctx, 'duplicate');
        return false;
      }
    }
    try {
      await rename(tmpPath, join(paths.ready, name));
    } catch (err) {
      // Housekeeping in another process may have finished a slow deduplicated send for us.
      if (!(errnoCode(err) === 'ENOENT' && marker !== undefined)) throw err;
    }
    enqueued = true;
    ctx.readyIndex.add(name);
    await fsyncDir(paths.ready);
  } catch (err) {
    if (!enqueued) {
      await unlink(tmpPath).catch(() => {});
      // Release the id, or the caller's retry of this failed send would be dropped as a duplicate.
      if (marker !== undefined) await unlink(marker).catch(() => {});
    }
    throw queueError(`queue ${ctx.name}: send`, err);
  }
  countEvent(ctx, 'sent');
  return true;
}

/**
 * Claims the dedupe id by hard-linking the staged message under the id's hash; returns the
 * marker, or undefined for a duplicate. Once claimed, the send completes even if this process
 * dies (housekeeping moves a linked temp file into ready/), so a retried send that is dropped as
 * a duplicate never loses the message.
 */
async function claimDedupe(
  ctx: QueueContext,
  tmpPath: string,
  dedupeId: string,
): Promise<string | undefined> {
  const { paths } = ctx;
  const marker = join(paths.dedupe, createHash('sha256').update(dedupeId).digest('hex'));
  for (let round = 0; round < 2; round++) {
    try {
      await link(tmpPath, marker);
      await fsyncDir(paths.dedupe);
      return marker;
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    try {
      const st = await stat(marker);
      if (nowMs(ctx) - st.mtimeMs < ctx.dedupeWindowMs) return undefined;
      await unlink(marker);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
  return undefined;
}

/**
 * Deals with what dead senders left in tmp/: a message whose dedupe id was claimed is delivered
 * (later sends of that id are dropped, so it must not be lost); anything else is removed.
 */
export async function finishOrphanedSends(ctx: QueueContext, now: number): Promise<void> {
  const { paths } = ctx;
  for (const name of await readdir(paths.tmp)) {
    const path = join(paths.tmp, name);
    try {
      const st = await stat(path);
      if (now - st.mtimeMs < ORPHAN_TEMP_MS) continue;
      if (st.nlink > 1 && parseReady(name) !== undefined) {
        await rename(path, join(paths.ready, name));
        ctx.readyIndex.add(name);
      } else {
        await unlink(path);
      }
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}

/** Forgets dedupe ids older than the window. */
export async function expireDedupeIds(ctx: QueueContext, now: number): Promise<void> {
  const { paths } = ctx;
  for (const name of await readdir(paths.dedupe)) {
    const path = join(paths.dedupe, name);
    try {
      const st = await stat(path);
      if (now - st.mtimeMs >= ctx.dedupeWindowMs) await unlink(path);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}
