/**
 * The queue directory's layout: one file per message, whose state is the directory it sits in and
 * its name.
 *
 *   tmp/<seq>.0.<notBefore>.msg                    being written by a sender
 *   ready/<seq>.<attempts>.<notBefore>.msg         waiting; visible once notBefore (ms) has passed
 *   inflight/<seq>.<attempt>.<leaseUntil>.<owner>.msg   leased by a consumer until leaseUntil (ms)
 *   dead/<seq>.json                                dead letter, with its last error; mtime = when it died
 *   dead/<seq>.json.redriving                      dead letter a redrive has claimed
 *   dedupe/<sha256 of dedupe id>                   hard link to a sent message; its mtime is the send time
 *
 * `seq` starts with the send time, so name order is FIFO order. `owner` starts with the consumer's
 * pid, so a lease whose process is gone can be told at a glance.
 */
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { toWasmMirrorError, WasmMirrorError } from '../../../core/errors.ts';
import { processAlive } from '../../../platform/files.ts';
import type { DeadLetterError } from './types.ts';

export interface QueuePaths {
  tmp: string;
  ready: string;
  inflight: string;
  dead: string;
  dedupe: string;
}

export function queuePaths(dir: string): QueuePaths {
  return {
    tmp: join(dir, 'tmp'),
    ready: join(dir, 'ready'),
    inflight: join(dir, 'inflight'),
    dead: join(dir, 'dead'),
    dedupe: join(dir, 'dedupe'),
  };
}

/** What a message file holds; it never changes once written. */
export interface StoredMessage<T> {
  v: 1;
  id: string;
  sentAt: string;
  dedupeId?: string;
  body: T;
}

/** A message a consumer holds: its id, which delivery this is, and its file under inflight/. */
export interface Lease {
  seq: string;
  attempt: number;
  file: string;
}

export interface Claimed<T> {
  lease: Lease;
  message: StoredMessage<T>;
}

export const SEQ = /^\d{15}-[0-9a-f]{8}-[0-9a-f]{6}$/;

let lastSeqMs = 0;
let seqCounter = Math.floor(Math.random() * 0x10000);

export function nextSeq(nowMs: number): string {
  // Monotonic within the process even if the wall clock steps back.
  lastSeqMs = Math.max(lastSeqMs, nowMs);
  seqCounter = (seqCounter + 1) % 0x100000000;
  return `${String(lastSeqMs).padStart(15, '0')}-${seqCounter.toString(16).padStart(8, '0')}-${randomBytes(3).toString('hex')}`;
}

export function readyName(seq: string, attempts: number, notBefore: number): string {
  return `${seq}.${attempts}.${notBefore}.msg`;
}

export function inflightName(seq: string, attempt: number, leaseUntil: number, owner: string): string {
  return `${seq}.${attempt}.${leaseUntil}.${owner}.msg`;
}

export function deadName(seq: string): string {
  return `${seq}.json`;
}

export function parseReady(name: string): { seq: string; attempts: number; notBefore: number } | undefined {
  const parts = name.split('.');
  if (parts.length !== 4 || parts[3] !== 'msg') return undefined;
  const [seq, attempts, notBefore] = parts as [string, string, string];
  if (!SEQ.test(seq) || !/^\d+$/.test(attempts) || !/^\d+$/.test(notBefore)) return undefined;
  return { seq, attempts: Number(attempts), notBefore: Number(notBefore) };
}

export function parseInflight(
  name: string,
): { seq: string; attempt: number; leaseUntil: number; owner: string; pid: number } | undefined {
  const parts = name.split('.');
  if (parts.length !== 5 || parts[4] !== 'msg') return undefined;
  const [seq, attempt, leaseUntil, owner] = parts as [string, string, string, string];
  const pid = Number(owner.split('-')[0]);
  if (!SEQ.test(seq) || !/^\d+$/.test(attempt) || !/^\d+$/.test(leaseUntil) || !Number.isSafeInteger(pid)) {
    return undefined;
  }
  return { seq, attempt: Number(attempt), leaseUntil: Number(leaseUntil), owner, pid };
}

/** Queue instances alive in this process, so a lease naming our pid can be told apart from a previous run's. */
const liveOwners = new Set<string>();

/** A lease owner id for a new queue instance: this process's pid and a random suffix. */
export function newOwner(): string {
  const owner = `${process.pid}-${randomBytes(4).toString('hex')}`;
  liveOwners.add(owner);
  return owner;
}

/** Whether the consumer that took a lease is gone, so the lease can be taken back before it expires. */
export function ownerGone(lease: { owner: string; pid: number }): boolean {
  return lease.pid === process.pid ? !liveOwners.has(lease.owner) : !processAlive(lease.pid);
}

export async function readMessage<T>(path: string, seq: string): Promise<StoredMessage<T>> {
  const message = JSON.parse(await readFile(path, 'utf8')) as StoredMessage<T>;
  if (message.v !== 1 || message.id !== seq) throw new Error('unexpected message envelope');
  return message;
}

/** Stands in for a message whose file cannot be read, so it can still be dead-lettered. */
export function unreadableMessage<T>(seq: string, nowMs: number): StoredMessage<T> {
  return { v: 1, id: seq, sentAt: new Date(nowMs).toISOString(), body: null as T };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

export function queueError(action: string, err: unknown): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WasmMirrorError('QUEUE_FAILURE', `${action}: ${message}`, { cause: err, retryable: true });
}

export function describeError(err: unknown): DeadLetterError {
  const e = toWasmMirrorError(err);
  return { code: e.code, message: e.message };
}
