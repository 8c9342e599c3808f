/**
 * Crash safety of the local adapters across real processes: consumers are killed with SIGKILL at
 * random instants and restarted; sends and create-only writes race from several processes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DiskQueue } from '../../../shared/adapters/local/disk-queue.ts';
import { FsObjectStore } from '../../../shared/adapters/local/fs-object-store.ts';

const here = dirname(fileURLToPath(import.meta.url));
const repoRoot = join(here, '..', '..', '..');
const WORKER = join(here, 'fixtures', 'queue-worker.ts');
const WRITER = join(here, 'fixtures', 'store-writer.ts');

interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

function run(script: string, args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let out = '';
  proc.stdout?.on('data', (d) => {
    out += String(d);
  });
  proc.stderr?.on('data', (d) => {
    out += String(d);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => {
      children.delete(proc);
      resolve({ code, signal });
    });
  });
  return { proc, output: () => out, exited };
}

async function waitForOutput(child: Child, text: string, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!child.output().includes(text)) {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return child.output().includes(text);
    if (Date.now() > deadline)
      throw new Error(`no '${text}' from child within ${timeoutMs} ms:\n${child.output()}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const randomBetween = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo));

async function readJson<T>(store: FsObjectStore, key: string): Promise<T> {
  const got = await store.getBytes(key, 1 << 20);
  if (got === undefined) throw new Error(`${key} missing`);
  return JSON.parse(new TextDecoder().decode(got.bytes)) as T;
}

async function keys(store: FsObjectStore, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const info of store.list(prefix)) out.push(info.key);
  return out;
}

/** Starts a worker, kills it with SIGKILL at a random instant, several times, then lets one drain the queue. */
async function killRepeatedly(queueDir: string, storeDir: string, mode: 'single' | 'batch', rounds: number) {
  let kills = 0;
  for (let round = 0; round < rounds; round++) {
    const worker = run(WORKER, [queueDir, storeDir, mode]);
    await waitForOutput(worker, 'ready', 20_000);
    await sleep(randomBetween(20, 250));
    if (worker.proc.exitCode !== null) break;
    worker.proc.kill('SIGKILL');
    const { signal } = await worker.exited;
    if (signal === 'SIGKILL') kills++;
  }
  const last = run(WORKER, [queueDir, storeDir, mode]);
  const { code } = await last.exited;
  expect(code, last.output()).toBe(0);
  return kills;
}

describe('crash safety across processes', () => {
  let base: string;
  let queueDir: string;
  let storeDir: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'wm-crash-'));
    queueDir = join(base, 'queue');
    storeDir = join(base, 'data');
  });
  afterEach(async () => {
    for (const child of children) child.kill('SIGKILL');
    await rm(base, { recursive: true, force: true });
  });

  it('kill -9 of a consumer at random instants loses no message and doubles no effect', async () => {
    // Prepare
    const queue = new DiskQueue<{ n: number }>({ dir: queueDir });
    for (let n = 0; n < 60; n++) await queue.send({ n }, { dedupeId: `n-${n}` });
    // Act: another process sends while the consumer runs, overlapping ids 50..59 (dropped as duplicates).
    const sender = run(WRITER, ['send', queueDir, '50', '30']);
    const kills = await killRepeatedly(queueDir, storeDir, 'single', 3);
    expect((await sender.exited).code, sender.output()).toBe(0);
    // The sender may have finished after the last worker drained: drain once more.
    if ((await queue.depth()).ready > 0) await killRepeatedly(queueDir, storeDir, 'single', 0);
    // Assess
    const store = new FsObjectStore({ root: storeDir });
    const effects = await keys(store, 'effects/');
    expect(effects).toHaveLength(80);
    for (let n = 0; n < 80; n++)
      expect((await readJson<{ n: number }>(store, `effects/${n}.json`)).n).toBe(n);
    expect(await queue.depth()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
    expect(kills).toBeGreaterThan(0);
    // The kills did land mid-delivery: some messages were delivered again after their consumer died.
    const log = (await readFile(join(storeDir, 'deliveries.log'), 'utf8')).trim().split('\n');
    expect(log.some((line) => Number(line.split(' ')[1]) > 1)).toBe(true);
  });

  it('kill -9 during batched, create-only publishes leaves every version intact and lists every message', async () => {
    // Prepare
    const queue = new DiskQueue<{ n: number }>({ dir: queueDir });
    for (let n = 0; n < 50; n++) await queue.send({ n });
    // Act
    await killRepeatedly(queueDir, storeDir, 'batch', 4);
    // Assess
    const store = new FsObjectStore({ root: storeDir });
    const versions = (await keys(store, 'versions/'))
      .map((k) => /^versions\/(\d+)\.json$/.exec(k)?.[1])
      .filter((v) => v !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    expect(versions.length).toBeGreaterThan(0);
    expect(versions).toEqual(Array.from({ length: versions.length }, (_, i) => i + 1));
    let previous: number[] = [];
    for (const v of versions) {
      const doc = await readJson<{ version: number; items: number[] }>(store, `versions/${v}.json`);
      expect(doc.version).toBe(v);
      expect(doc.items).toEqual(expect.arrayContaining(previous));
      previous = doc.items;
    }
    const latest = await readJson<{ version: number; items: number[] }>(store, 'versions/latest.json');
    expect(latest.version).toBe(versions.at(-1));
    expect(latest.items).toEqual(Array.from({ length: 50 }, (_, n) => n));
    expect(await queue.depth()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 0 });
  });

  it('concurrent create from several processes: exactly one wins each key', async () => {
    // Prepare
    const contested = Array.from({ length: 20 }, (_, i) => `manifests/${i + 1}.json`);
    const startAt = String(Date.now() + 2500);
    // Act
    const writers = ['a', 'b', 'c'].map((id) => run(WRITER, ['create', storeDir, startAt, id, ...contested]));
    const results = await Promise.all(
      writers.map(async (w) => {
        expect((await w.exited).code, w.output()).toBe(0);
        return w.output();
      }),
    );
    // Assess
    const store = new FsObjectStore({ root: storeDir });
    for (const key of contested) {
      const winners = ['a', 'b', 'c'].filter((_, i) => results[i]!.includes(`won ${key}\n`));
      const losers = ['a', 'b', 'c'].filter((_, i) => results[i]!.includes(`lost ${key}\n`));
      expect(winners, key).toHaveLength(1);
      expect(losers, key).toHaveLength(2);
      const got = await store.getBytes(key, 100);
      expect(new TextDecoder().decode(got!.bytes)).toBe(`writer ${winners[0]}`);
    }
    expect((await readdir(join(storeDir, 'manifests'))).sort()).toEqual(
      contested.map((k) => k.slice('manifests/'.length)).sort(),
    );
  });
});
