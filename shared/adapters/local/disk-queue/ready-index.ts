/**
 * An in-memory index of ready/, so a claim costs O(log n) instead of listing and sorting the
 * directory (at 60,000 waiting messages that listing made draining crawl). The files stay the
 * truth: the index is built from one listing on the first claim, kept up to date by what this
 * instance moves into ready/ (sends, retries, leases taken back, redrives), and rebuilt from a
 * fresh listing when something else may have changed the directory: another process or queue
 * instance sending or redriving. A stale entry (a message another consumer took) costs one
 * failed rename at claim time and is dropped.
 *
 * When to list again: a claim that finds fewer visible messages than it wants checks ready/'s
 * mtime (one stat), which every rename into or out of the directory moves; while the directory
 * changed within the last second, the mtime's coarse granularity could hide a second change, so
 * it is listed again regardless. Whatever those checks say, ready/ is listed afresh every 30 s.
 */
import { readdir, stat } from 'node:fs/promises';
import { parseReady } from './layout.ts';

/** ready/ is listed again at least this often, whatever the mtime says. */
const FULL_RESCAN_MS = 30_000;
/** An mtime younger than this may hide a change made within the same timestamp tick. */
const RACY_MTIME_MS = 1000;
/** Listings take at most 1/this of real time, however large the directory. */
const SCAN_DUTY_FACTOR = 20;

interface Entry {
  name: string;
  seq: string;
  attempts: number;
  notBefore: number;
  state: 'delayed' | 'visible' | 'gone';
}

export interface ReadyIndexOptions {
  dir: string;
  pollIntervalMs: number;
}

export class ReadyIndex {
  private readonly dir: string;
  private readonly pollIntervalMs: number;
  private readonly byName = new Map<string, Entry>();
  /** Due messages, oldest seq first. */
  private visible = new Heap<Entry>(bySeq);
  /** Messages waiting for their notBefore, soonest first. */
  private delayed = new Heap<Entry>(byNotBefore);
  /** Delayed messages that are waiting for a retry: for FIFO, the oldest holds back later ones. */
  private retrying = new Heap<Entry>(bySeq);
  private visibleCount = 0;
  private built = false;
  private scanning: Promise<void> | undefined;
  /** Names added or removed while a listing runs: the listing may predate them. */
  private pending: { added: Set<string>; removed: Set<string> } | undefined;
  private lastScanAt = 0;
  private lastMtimeMs = -1;
  private lastMtimeRacy = true;
  private lastScanRealMs = 0;
  private lastScanEndReal = 0;

  constructor(options: ReadyIndexOptions) {
    this.dir = options.dir;
    this.pollIntervalMs = options.pollIntervalMs;
  }

  /** A file named `name` was renamed into ready/ by this instance. */
  add(name: string): void {
    this.pending?.added.add(name);
    if (this.built) this.insert(name);
  }

  /** Lists ready/ on the first claim, every 30 s, and when a short claim may have missed a change. */
  async refresh(now: number, wanted: number): Promise<void> {
    if (!this.built || now - this.lastScanAt >= FULL_RESCAN_MS) return this.scan(now);
    this.promote(now);
    if (this.visibleCount >= wanted || now - this.lastScanAt < this.pollIntervalMs) return;
    if (performance.now() - this.lastScanEndReal < SCAN_DUTY_FACTOR * this.lastScanRealMs) return;
    const st = await stat(this.dir);
    if (st.mtimeMs !== this.lastMtimeMs || this.lastMtimeRacy) await this.scan(now);
  }

  /**
   * Takes the next visible message in FIFO order and forgets it, or undefined. With `fifo`, a
   * message waiting for a retry holds back the ones after it.
   */
  take(now: number, fifo: boolean): { name: string; seq: string; attempts: number } | undefined {
    this.promote(now);
    const top = this.peekVisible();
    if (top === undefined) return undefined;
    if (fifo) {
      const hold = this.oldestRetrying();
      if (hold !== undefined && hold.seq < top.seq) return undefined;
    }
    this.visible.pop();
    this.forget(top);
    return top;
  }

  private forget(entry: Entry): void {
    if (entry.state === 'visible') this.visibleCount--;
    entry.state = 'gone';
    this.byName.delete(entry.name);
    this.pending?.removed.add(entry.name);
  }

  private insert(name: string): void {
    if (this.byName.has(name)) return;
    const parsed = parseReady(name);
    if (parsed === undefined) return;
    const entry: Entry = { name, ...parsed, state: 'delayed' };
    this.byName.set(name, entry);
    this.delayed.push(entry);
    if (entry.attempts > 0) this.retrying.push(entry);
  }

  /** Moves messages whose notBefore has passed to the visible heap. */
  private promote(now: number): void {
    for (let top = this.delayed.peek(); top !== undefined; top = this.delayed.peek()) {
      if (top.state === 'delayed' && top.notBefore > now) break;
      this.delayed.pop();
      if (top.state !== 'delayed') continue;
      top.state = 'visible';
      this.visibleCount++;
      this.visible.push(top);
    }
  }

  private peekVisible(): Entry | undefined {
    let top = this.visible.peek();
    while (top !== undefined && top.state !== 'visible') {
      this.visible.pop();
      top = this.visible.peek();
    }
    return top;
  }

  private oldestRetrying(): Entry | undefined {
    let top = this.retrying.peek();
    while (top !== undefined && top.state !== 'delayed') {
      this.retrying.pop();
      top = this.retrying.peek();
    }
    return top;
  }

  private scan(now: number): Promise<void> {
    this.scanning ??= this.rebuild(now).finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  /** Replaces the index with a fresh listing, plus what this instance changed while it was taken. */
  private async rebuild(now: number): Promise<void> {
    const started = performance.now();
    const pending = { added: new Set<string>(), removed: new Set<string>() };
    this.pending = pending;
    let names: string[];
    let mtimeMs: number;
    try {
      // The mtime is read first: a change during the listing then shows as a newer mtime.
      mtimeMs = (await stat(this.dir)).mtimeMs;
      names = await readdir(this.dir);
    } finally {
      this.pending = undefined;
    }
    for (const entry of this.byName.values()) entry.state = 'gone';
    this.byName.clear();
    this.visible = new Heap<Entry>(bySeq);
    this.delayed = new Heap<Entry>(byNotBefore);
    this.retrying = new Heap<Entry>(bySeq);
    this.visibleCount = 0;
    this.built = true;
    for (const name of names) if (!pending.removed.has(name)) this.insert(name);
    for (const name of pending.added) if (!pending.removed.has(name)) this.insert(name);
    this.lastScanAt = now;
    this.lastMtimeMs = mtimeMs;
    this.lastMtimeRacy = Date.now() - mtimeMs < RACY_MTIME_MS;
    this.lastScanEndReal = performance.now();
    this.lastScanRealMs = this.lastScanEndReal - started;
  }
}

const bySeq = (a: Entry, b: Entry) => a.seq < b.seq;
const byNotBefore = (a: Entry, b: Entry) =>
  a.notBefore < b.notBefore || (a.notBefore === b.notBefore && a.seq < b.seq);

/** A binary min-heap; `before(a, b)` is true when a comes out first. */
class Heap<T> {
  private readonly items: T[] = [];

  constructor(private readonly before: (a: T, b: T) => boolean) {}

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    items[0] = last;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < items.length && this.before(items[left]!, items[smallest]!)) smallest = left;
      if (right < items.length && this.before(items[right]!, items[smallest]!)) smallest = right;
      if (smallest === i) break;
      [items[i], items[smallest]] = [items[smallest]!, items[i]!];
      i = smallest;
    }
    return top;
  }
}
