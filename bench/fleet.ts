/**
 * Fleet figures for manifest v2 (run: `npx tsx bench/fleet.ts`; `--quick` skips the
 * 1,000,000-entry runs). Every figure comes from the real code: the publisher writes v2 into a
 * filesystem store, the embedded mirror's HTTP server serves it (gzip as agents ask), and the
 * real agent syncs from it.
 *  1. Bytes and requests an up-to-date agent spends after a publish that changes one entry, with
 *     the mirror at 500 and at 50,000 entries, selecting everything and selecting 5 names; the
 *     v1 figure (the whole manifest) beside it.
 *  2. Peak RSS of an agent syncing a 1,000,000-entry mirror with --select of 10 names, and the
 *     publisher's time and peak RSS to publish one change into it (each in its own process).
 *  3. A monthly CDN model at 10,000 and 1,000,000 agents polling every 30 s with 1,000 pushes a
 *     day, with and without a cluster tier of 50 nodes per cluster, from the measured figures.
 * Large trees are laid out directly (buildTree + files), which is what the publisher's first
 * publish of the same entries would write, only without a million fsyncs.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { FsObjectStore } from '../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../shared/adapters/local/signer.ts';
import { WasmMirrorAgent } from '../shared/agent/index.ts';
import { parseConfig } from '../shared/core/config.ts';
import { MANIFEST_TYPE, type ManifestModule, type ModuleRecord, storageKeys } from '../shared/core/domain.ts';
import {
  buildTree,
  compareModules,
  depthFor,
  INDEX_PAYLOAD_TYPE,
  INDEX_TYPE,
  signManifest,
  signPayload,
  trustedKeyFrom,
  v2Keys,
  validateIndexPayload,
} from '../shared/core/manifest/index.ts';
import { createPublisher } from '../shared/core/pipeline/publish.ts';
import { noMetrics, type Signer, silentLogger } from '../shared/core/ports.ts';
import { createMirrorServer, listen } from '../shared/embedded/http-server.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const MIRROR = 'fleet-mesh';
/** A handful of module files back every entry: the agent fetches each sha256 once. */
const MODULE_VARIANTS = 8;

function moduleBytes(i: number): Uint8Array {
  return new TextEncoder().encode(`\0asm fleet module ${i}`.padEnd(64, '.'));
}
const moduleSha = (i: number) => createHash('sha256').update(moduleBytes(i)).digest('hex');

function entry(i: number, tag = '1.0.0'): ManifestModule {
  const v = i % MODULE_VARIANTS;
  return {
    name: `ghcr.io/acme/plugin-${i}`,
    tag,
    ociDigest: `sha256:${createHash('sha256').update(`oci ${i} ${tag}`).digest('hex')}`,
    sha256: moduleSha(v),
    size: moduleBytes(v).byteLength,
    format: 'compat-image',
    kind: 'module',
    abi: 'proxy_abi_version_0_2_1',
    mirroredAt: '2026-11-01T00:00:00.000Z',
  };
}

/** Writes a v2 mirror of `n` entries (and, with `v1`, the v1 document) into `root`. */
async function layMirror(root: string, n: number, signer: Signer, v1: boolean): Promise<void> {
  const modules = Array.from({ length: n }, (_, i) => entry(i));
  const depth = depthFor(n);
  const tree = buildTree(modules, depth);
  for (const [sha, bytes] of tree.nodes) write(root, v2Keys.node(sha), bytes);
  const now = new Date();
  const payload = validateIndexPayload({
    type: INDEX_TYPE,
    mirror: MIRROR,
    version: 1,
    issuedAt: iso(now),
    expiresAt: iso(new Date(now.getTime() + 48 * 3600_000)),
    entries: n,
    depth,
    root: tree.root,
  });
  const signed = await signPayload(INDEX_PAYLOAD_TYPE, payload, signer);
  write(root, v2Keys.indexVersion(1), signed.bytes);
  write(root, v2Keys.index, signed.bytes);
  for (let v = 0; v < MODULE_VARIANTS; v++) write(root, storageKeys.module(moduleSha(v)), moduleBytes(v));
  if (v1) {
    const legacy = await signManifest(
      {
        type: MANIFEST_TYPE,
        mirror: MIRROR,
        version: 1,
        issuedAt: payload.issuedAt,
        expiresAt: payload.expiresAt,
        modules,
      },
      signer,
    );
    write(root, storageKeys.latestManifest, legacy.bytes);
  }
}

const iso = (d: Date) => `${d.toISOString().slice(0, 19)}Z`;

function write(root: string, key: string, bytes: Uint8Array): void {
  const path = join(root, key);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, bytes);
}

/** The embedded mirror's HTTP server over a data directory, counting requests and body bytes sent. */
async function serve(
  root: string,
): Promise<{ url: string; server: Server; sent: { requests: number; bytes: number } }> {
  const store = await FsObjectStore.open({ root });
  const server = createMirrorServer({
    store,
    receiveWebhook: async () => ({ status: 404, body: {} }),
    renderMetrics: () => '',
    status: async () => ({}),
    logger: silentLogger,
  });
  const sent = { requests: 0, bytes: 0 };
  server.prependListener('request', (_req, res) => {
    sent.requests++;
    const write = res.write.bind(res) as (chunk: unknown, ...rest: unknown[]) => boolean;
    const end = res.end.bind(res) as (...args: unknown[]) => unknown;
    const count = (chunk: unknown) => {
      if (typeof chunk === 'string') sent.bytes += Buffer.byteLength(chunk);
      else if (chunk instanceof Uint8Array) sent.bytes += chunk.byteLength;
    };
    res.write = ((chunk: unknown, ...rest: unknown[]) => {
      count(chunk);
      return write(chunk, ...rest);
    }) as typeof res.write;
    res.end = ((...args: unknown[]) => {
      if (typeof args[0] !== 'function') count(args[0]);
      return end(...args);
    }) as typeof res.end;
  });
  return { url: await listen(server, 0, '127.0.0.1'), server, sent };
}

interface ChangeCost {
  entries: number;
  select: string;
  requests: number;
  bytes: number;
}

/** An up-to-date agent, one publish changing one entry, the agent's next sync: what it cost. */
async function changeCost(n: number, selectNames: number | 'all'): Promise<ChangeCost> {
  const work = mkdtempSync(join(tmpdir(), 'wm-fleet-'));
  try {
    const root = join(work, 'data');
    const signer = await loadOrCreateKey(join(work, 'private'));
    await layMirror(root, n, signer, false);
    const { url, server, sent } = await serve(root);
    const select =
      selectNames === 'all'
        ? []
        : Array.from({ length: selectNames }, (_, i) => `ghcr.io/acme/plugin-${i * 97}`);
    const agent = new WasmMirrorAgent({
      mirrorUrl: url,
      mirrorName: MIRROR,
      trustedKeys: [trustedKeyFrom(await signer.publicKeySpki())],
      dir: join(work, 'agent'),
      select,
      logger: silentLogger,
    });
    await agent.syncOnce();
    // The change: a new tag of a name outside any selection of five.
    const store = await FsObjectStore.open({ root });
    const config = parseConfig(`mirror: { name: ${MIRROR}, legacyManifest: false, publishInterval: 0 }`);
    const publish = createPublisher({
      config,
      store,
      signer,
      clock: { now: () => new Date() },
      logger: silentLogger,
      metrics: noMetrics,
    });
    const changed: ModuleRecord = {
      ...entry(n - 1, '2.0.0'),
      kind: 'module',
      mirroredAt: new Date().toISOString(),
    };
    await publish([{ kind: 'record', record: changed }]);
    sent.requests = 0;
    sent.bytes = 0;
    const result = await agent.syncOnce();
    if (result.version !== 2)
      throw new Error(`the agent did not take the new version: ${JSON.stringify(result)}`);
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    return {
      entries: n,
      select: selectNames === 'all' ? 'everything' : `${selectNames} names`,
      requests: sent.requests,
      bytes: sent.bytes,
    };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** What a v1 agent downloads after every publish: the whole signed manifest (gzipped on the wire). */
async function v1Cost(n: number): Promise<{ raw: number; gzip: number }> {
  const work = mkdtempSync(join(tmpdir(), 'wm-fleet-v1-'));
  try {
    const signer = await loadOrCreateKey(join(work, 'private'));
    const modules = Array.from({ length: n }, (_, i) => entry(i)).sort(compareModules);
    const now = new Date();
    const legacy = await signManifest(
      {
        type: MANIFEST_TYPE,
        mirror: MIRROR,
        version: 1,
        issuedAt: iso(now),
        expiresAt: iso(new Date(now.getTime() + 3600_000)),
        modules,
      },
      signer,
    );
    return { raw: legacy.bytes.byteLength, gzip: gzipSync(legacy.bytes).byteLength };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Runs this file as a child (`child-agent` / `child-publish`) and reads its JSON answer. */
function child(args: string[]): Record<string, number> {
  const out = execFileSync(process.execPath, ['--import', 'tsx', join(HERE, 'fleet.ts'), ...args], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').at(-1)!) as Record<string, number>;
}

function peakRssMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m === null ? Number.NaN : Math.round(Number(m[1]) / 1024);
}

async function childAgent(root: string, keyFile: string): Promise<void> {
  const { url, server } = await serve(root);
  const agent = new WasmMirrorAgent({
    mirrorUrl: url,
    mirrorName: MIRROR,
    trustedKeys: [trustedKeyFrom(readFileSync(keyFile))],
    dir: mkdtempSync(join(tmpdir(), 'wm-fleet-agent-')),
    select: Array.from({ length: 10 }, (_, i) => `ghcr.io/acme/plugin-${i * 99_991}`),
    logger: silentLogger,
  });
  const started = performance.now();
  const result = await agent.syncOnce();
  const ms = Math.round(performance.now() - started);
  server.closeAllConnections();
  server.close();
  process.stdout.write(`${JSON.stringify({ ms, selected: result.selected, rssMiB: peakRssMiB() })}\n`);
}

async function childPublish(root: string, privateDir: string): Promise<void> {
  const store = await FsObjectStore.open({ root });
  const signer = await loadOrCreateKey(privateDir);
  const config = parseConfig(`mirror: { name: ${MIRROR}, legacyManifest: false, publishInterval: 0 }`);
  const publish = createPublisher({
    config,
    store,
    signer,
    clock: { now: () => new Date() },
    logger: silentLogger,
    metrics: noMetrics,
  });
  const rssBefore = peakRssMiB();
  const started = performance.now();
  const out = await publish([
    {
      kind: 'record',
      record: { ...entry(123_456, '9.9.9'), kind: 'module', mirroredAt: new Date().toISOString() },
    },
  ]);
  const ms = Math.round(performance.now() - started);
  process.stdout.write(
    `${JSON.stringify({ ms, version: out.version, entries: out.modules, rssMiB: peakRssMiB(), rssBeforeMiB: rssBefore })}\n`,
  );
}

async function millionEntries(): Promise<{ agent: Record<string, number>; publish: Record<string, number> }> {
  const work = mkdtempSync(join(tmpdir(), 'wm-fleet-1m-'));
  try {
    const root = join(work, 'data');
    const privateDir = join(work, 'private');
    const signer = await loadOrCreateKey(privateDir);
    const started = performance.now();
    await layMirror(root, 1_000_000, signer, false);
    console.log(`  laid out 1,000,000 entries in ${Math.round((performance.now() - started) / 1000)} s`);
    const keyFile = join(work, 'key.der');
    writeFileSync(keyFile, await signer.publicKeySpki());
    const agent = child(['child-agent', root, keyFile]);
    const publish = child(['child-publish', root, privateDir]);
    return { agent, publish };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** CloudFront list prices (US/Europe, first tier, 2026): data out per GB, HTTPS requests per 10,000. */
const PRICE = { perGB: 0.085, per10kRequests: 0.01 };
const SECONDS_PER_MONTH = 30 * 86_400;

function fleetModel(perChange: ChangeCost, unchangedPollBytes: number) {
  const pushesPerMonth = 1_000 * 30;
  const rows: string[] = [];
  for (const agents of [10_000, 1_000_000]) {
    for (const tier of [false, true]) {
      const pollers = tier ? Math.ceil(agents / 50) : agents;
      const polls = pollers * (SECONDS_PER_MONTH / 30);
      // Every publish makes each poller's next poll a changed one (an upper bound: coalescing and
      // polls that see several publishes at once only lower it).
      const changedPolls = Math.min(polls, pollers * pushesPerMonth);
      const requests = polls - changedPolls + changedPolls * perChange.requests;
      const bytes = (polls - changedPolls) * unchangedPollBytes + changedPolls * perChange.bytes;
      const cost = (bytes / 1e9) * PRICE.perGB + (requests / 10_000) * PRICE.per10kRequests;
      rows.push(
        `${String(agents).padStart(9)} agents  ${tier ? 'cluster tier (50 nodes/cluster)' : 'no cluster tier               '}  ` +
          `${(requests / 1e6).toFixed(0).padStart(7)} M requests  ${(bytes / 1e9).toFixed(1).padStart(8)} GB  $${cost.toFixed(0).padStart(7)}/month`,
      );
    }
  }
  return rows;
}

async function main(): Promise<void> {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'child-agent') return childAgent(rest[0]!, rest[1]!);
  if (mode === 'child-publish') return childPublish(rest[0]!, rest[1]!);
  const quick = process.argv.includes('--quick');

  console.log('1. One changed entry: what an up-to-date agent downloads on its next sync (body bytes, gzip)');
  const costs: ChangeCost[] = [];
  for (const n of [500, 50_000]) {
    for (const sel of ['all', 5] as const) {
      const c = await changeCost(n, sel);
      costs.push(c);
      console.log(
        `  ${String(n).padStart(6)} entries, selecting ${c.select.padEnd(10)}  ${c.requests} requests  ${c.bytes} bytes`,
      );
    }
    const v1 = await v1Cost(n);
    console.log(
      `  ${String(n).padStart(6)} entries, v1 (whole manifest)      1 request   ${v1.raw} bytes (${v1.gzip} gzipped)`,
    );
  }

  if (!quick) {
    console.log('2. 1,000,000 entries');
    const m = await millionEntries();
    console.log(
      `  agent --select of 10 names: first sync ${m.agent.ms} ms, ${m.agent.selected} entries, peak RSS ${m.agent.rssMiB} MiB`,
    );
    console.log(`  publisher, one change: ${m.publish.ms} ms, peak RSS ${m.publish.rssMiB} MiB`);
  }

  console.log(
    `3. Monthly CDN model (polls every 30 s, 1,000 pushes/day, $${PRICE.perGB}/GB, $${PRICE.per10kRequests}/10k requests)`,
  );
  // An unchanged poll is a 304 to the conditional request for the index: no body.
  const worst = costs.filter((c) => c.select === 'everything').sort((a, b) => b.bytes - a.bytes)[0]!;
  for (const row of fleetModel(worst, 0)) console.log(`  ${row}`);
}

await main();
