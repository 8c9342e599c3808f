/**
 * The agent against a mirror publishing manifest v2: the index verified and pinned, only the
 * nodes the selection needs and does not hold fetched, the selected entries synced as before and
 * written to manifest.json in v1's shape; compression; restarts; and v1 as a one-release fallback
 * that is never returned to once v2 was accepted.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import { WasmMirrorAgent } from '../../shared/agent/index.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import {
  binOf,
  signManifest,
  type TrustedKey,
  v2Keys,
  validatePayload,
} from '../../shared/core/manifest/index.ts';
import { newSigner, payloadOf, T0, trusted } from '../manifest/helpers.ts';
import { codeOf, fixedClock, snapshot } from './agent-helpers.ts';
import { TestMirror, wasmBytes } from './mirror-server.ts';

const NOW = new Date(T0.getTime() + 3600e3);
const BASIC = 'ghcr.io/acme/basic-auth';
const RATE = 'ghcr.io/acme/rate-limit';

let mirror: TestMirror;
let signer: LocalKeySigner;
let keys: TrustedKey[];
let basic: ManifestModule;
let rate: ManifestModule;
/** 300 entries sharing one small module: a tree of depth 2 without 300 downloads. */
let fill: ManifestModule[];
let base: ManifestModule[];
const dirs: string[] = [];
const agents: WasmMirrorAgent[] = [];
const mirrors: TestMirror[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'wm-agent-v2-'));
  dirs.push(d);
  return d;
}

function agentFor(
  dir: string,
  extra: Partial<ConstructorParameters<typeof WasmMirrorAgent>[0]> = {},
  on: TestMirror = mirror,
) {
  const a = new WasmMirrorAgent({
    mirrorUrl: on.url,
    mirrorName: 'prod-mesh',
    trustedKeys: keys,
    dir,
    clock: fixedClock(NOW),
    ...extra,
  });
  agents.push(a);
  return a;
}

/** A copy of a filler entry under a new tag: a one-entry change in that entry's bin. */
function retagged(m: ManifestModule, tag: string): ManifestModule {
  return { ...m, tag };
}

function fillerWhere(test: (bin: string) => boolean): ManifestModule {
  const found = fill.find((m) => test(binOf(m.name, 2)));
  if (found === undefined) throw new Error('no filler entry in such a bin');
  return found;
}

function metricValue(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

beforeAll(async () => {
  mirror = await new TestMirror().start();
  signer = newSigner();
  keys = [await trusted(signer)];
  basic = mirror.addModule(BASIC, wasmBytes('basic-auth', 3000));
  rate = mirror.addModule(RATE, wasmBytes('rate-limit', 70_000));
  const filler = wasmBytes('filler', 200);
  fill = Array.from({ length: 300 }, (_, i) => mirror.addModule(`ghcr.io/fill/plugin-${i}`, filler));
  base = [basic, rate, ...fill];
});

afterEach(() => {
  mirror.overrides.clear();
  mirror.gzipJson = true;
});

afterAll(async () => {
  for (const a of agents) a.close();
  await mirror.stop();
  for (const m of mirrors) await m.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('agent sync over manifest v2', () => {
  it('verifies the index, reads every node once, lands the modules; a resync is one 304', async () => {
    // Prepare
    const published = await mirror.publishIndex(signer, base, { version: 42 });
    const dir = tempDir();
    const agent = agentFor(dir);

    // Act
    mirror.resetCounters();
    const first = await agent.syncOnce();
    const firstSent = mirror.bytesSent;
    mirror.resetCounters();
    const again = await agent.syncOnce();
    const metrics = await agent.metrics.render();

    // Assess
    expect(published.payload.depth).toBe(2);
    expect(first).toMatchObject({
      format: 'v2',
      version: 42,
      accepted: true,
      downloaded: 3,
      selected: 302,
      nodesFetched: published.nodes.size,
    });
    // Everything the agent counted is what the mirror sent for the documents (gzip on the wire).
    const moduleBytes = 3000 + 70_000 + 200;
    expect(first.manifestBytes).toBe(firstSent - moduleBytes);
    const decoded = [...published.nodes.values()].reduce((n, b) => n + b.length, published.bytes.length);
    expect(first.manifestBytes).toBeLessThan(decoded);
    const local = validatePayload(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')));
    expect(local).toMatchObject({ type: 'wasm-mirror.manifest/v1', mirror: 'prod-mesh', version: 42 });
    expect(local.modules).toHaveLength(302);
    const state = JSON.parse(readFileSync(join(dir, 'agent-state.json'), 'utf8'));
    expect(state).toMatchObject({ format: 2, index: { version: 42 } });
    expect(again).toMatchObject({ notModified: true, nodesFetched: 0, downloaded: 0, requests: 1 });
    expect(mirror.requests).toEqual([`/${v2Keys.index}`]);
    expect(metricValue(metrics, 'wasm_mirror_manifest_bytes_total{document="node"}')).toBeGreaterThan(0);
    expect(metricValue(metrics, 'wasm_mirror_manifest_bytes_total{document="index"}')).toBeGreaterThan(0);
    expect(metrics).toContain('wasm_mirror_manifest_version 42');
  });

  it('after a one-entry change fetches the index, the changed node of each level and the new module', async () => {
    // Prepare
    const before = await mirror.publishIndex(signer, base, { version: 42 });
    const agent = agentFor(tempDir());
    await agent.syncOnce();
    const basic2 = mirror.addModule(BASIC, wasmBytes('basic-auth-2', 3100), '2.0.0');
    const after = await mirror.publishIndex(signer, [...base, basic2], { version: 43 });
    const newNodes = [...after.nodes.keys()].filter((sha) => !before.nodes.has(sha));

    // Act
    mirror.resetCounters();
    const r = await agent.syncOnce();

    // Assess
    expect(newNodes).toHaveLength(2);
    expect(r).toMatchObject({ version: 43, nodesFetched: 2, downloaded: 1, selected: 303, requests: 4 });
    expect(mirror.requests.sort()).toEqual(
      [
        `/${v2Keys.index}`,
        ...newNodes.map((sha) => `/${v2Keys.node(sha)}`),
        `/modules/sha256/${basic2.sha256}.wasm`,
      ].sort(),
    );
  });

  it('an exact --select reads only the path to its bin, and nothing when other bins change', async () => {
    // Prepare
    await mirror.publishIndex(signer, base, { version: 42 });
    const dir = tempDir();
    const agent = agentFor(dir, { select: [`${BASIC}:1.*`] });
    const bin = binOf(BASIC, 2);
    const elsewhere = fillerWhere((b) => b[0] !== bin[0]);
    const besideIt = fillerWhere((b) => b[0] === bin[0] && b !== bin);

    // Act
    mirror.resetCounters();
    const first = await agent.syncOnce();
    const firstRequests = [...mirror.requests];
    await mirror.publishIndex(signer, [...base, retagged(elsewhere, '9')], { version: 43 });
    mirror.resetCounters();
    const otherSubtree = await agent.syncOnce();
    await mirror.publishIndex(signer, [...base, retagged(elsewhere, '9'), retagged(besideIt, '9')], {
      version: 44,
    });
    const samePage = await agent.syncOnce();

    // Assess: the first sync is the index, a page, the bin and the one module
    expect(first).toMatchObject({ selected: 1, nodesFetched: 2, downloaded: 1, requests: 4 });
    expect(firstRequests.filter((p) => p.includes('/modules/'))).toEqual([
      `/modules/sha256/${basic.sha256}.wasm`,
    ]);
    expect(otherSubtree).toMatchObject({ version: 43, nodesFetched: 0, requests: 1, selected: 1 });
    expect(samePage).toMatchObject({ version: 44, nodesFetched: 1, selected: 1 });
    const local = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(local.modules.map((m: ManifestModule) => m.name)).toEqual([BASIC]);
    expect(local.version).toBe(44);
  });

  it('a wildcard --select reads every bin once, then only the changed ones', async () => {
    // Prepare
    const published = await mirror.publishIndex(signer, base, { version: 42 });
    const agent = agentFor(tempDir(), { select: ['ghcr.io/acme/*'] });

    // Act
    const first = await agent.syncOnce();
    await mirror.publishIndex(signer, [...base, retagged(fill[7]!, '9')], { version: 43 });
    const changed = await agent.syncOnce();

    // Assess
    expect(first).toMatchObject({ nodesFetched: published.nodes.size, selected: 2, downloaded: 2 });
    expect(changed).toMatchObject({ nodesFetched: 2, selected: 2, downloaded: 0 });
  });

  it('a restarted agent resumes from its walk file; an unreadable one only costs a new walk', async () => {
    // Prepare
    const published = await mirror.publishIndex(signer, base, { version: 42 });
    const dir = tempDir();
    await agentFor(dir).syncOnce();

    // Act
    const restarted = await agentFor(dir).syncOnce();
    writeFileSync(join(dir, 'agent-tree.json'), '{"format":1,"index":');
    const afterDamage = await agentFor(dir).syncOnce();

    // Assess
    expect(restarted).toMatchObject({ version: 42, nodesFetched: 0, downloaded: 0, cached: 3, requests: 1 });
    expect(afterDamage).toMatchObject({ version: 42, nodesFetched: published.nodes.size, downloaded: 0 });
  });

  it('a walk cut short by a missing node resumes where it stopped', async () => {
    // Prepare: the last bin in walking order is missing for a while
    const published = await mirror.publishIndex(signer, base, { version: 42 });
    const lastBin = base
      .map((m) => binOf(m.name, 2))
      .sort()
      .at(-1)!;
    const lastPin = [...published.nodes.keys()].find((sha) => {
      const text = Buffer.from(published.nodes.get(sha)!).toString();
      return text.endsWith(`"prefix":"${lastBin}","type":"wasm-mirror.bin/v2"}`);
    })!;
    mirror.overrides.set(`/${v2Keys.node(lastPin)}`, (_req, res) => void res.writeHead(404).end());
    const dir = tempDir();
    const agent = agentFor(dir);

    // Act
    const failed = await codeOf(agent.syncOnce());
    mirror.overrides.clear();
    const resumed = await agent.syncOnce();

    // Assess
    expect(failed).toBe('NODE_MISSING');
    expect(resumed).toMatchObject({ version: 42, nodesFetched: 1, selected: 302 });
  });

  it('follows the publisher when the tree grows a level', async () => {
    // Prepare
    await mirror.publishIndex(signer, base, { version: 42 });
    const dir = tempDir();
    const agent = agentFor(dir, { select: [BASIC, RATE] });
    await agent.syncOnce();

    // Act
    const deeper = await agent.syncOnce().then(async () => {
      await mirror.publishIndex(signer, base, { version: 43, depth: 3 });
      return agent.syncOnce();
    });

    // Assess: two names, three levels each, the level-1 pages possibly shared
    expect(deeper).toMatchObject({ version: 43, selected: 2, downloaded: 0 });
    expect(deeper.nodesFetched).toBeGreaterThanOrEqual(5);
    expect(deeper.nodesFetched).toBeLessThanOrEqual(6);
  });

  it('collects modules that leave the selected entries after the grace period', async () => {
    // Prepare
    await mirror.publishIndex(signer, base, { version: 42 });
    const dir = tempDir();
    await agentFor(dir).syncOnce();
    await mirror.publishIndex(signer, [basic, ...fill], { version: 43 });
    const rateFile = join(dir, 'modules/sha256', `${rate.sha256}.wasm`);

    // Act
    const r1 = await agentFor(dir).syncOnce();
    const later = new Date(NOW.getTime() + 24 * 3600e3 + 1000);
    const r2 = await agentFor(dir, { clock: fixedClock(later) }).syncOnce();

    // Assess
    expect(r1.removed).toBe(0);
    expect(r2.removed).toBe(1);
    expect(() => readFileSync(rateFile)).toThrow();
  });

  it('asks for gzip and br and reads either', async () => {
    // Prepare
    const published = await mirror.publishIndex(signer, base, { version: 42 });
    let asked = '';
    mirror.overrides.set(`/${v2Keys.index}`, (req, res) => {
      asked = String(req.headers['accept-encoding']);
      const body = brotliCompressSync(published.bytes);
      res.writeHead(200, { 'content-encoding': 'br', 'content-length': body.length }).end(body);
    });

    // Act
    const r = await agentFor(tempDir(), { select: [BASIC] }).syncOnce();

    // Assess
    expect(asked).toBe('gzip, br');
    expect(r).toMatchObject({ format: 'v2', version: 42, selected: 1 });
  });
});

describe('manifest v1 as a fallback', () => {
  async function v1Mirror() {
    const m = await new TestMirror().start();
    mirrors.push(m);
    const a = m.addModule(BASIC, wasmBytes('basic-auth', 3000));
    return { m, a };
  }

  it('reads v1 from a mirror without an index, moves to v2 when it appears, never back', async () => {
    // Prepare
    const { m, a } = await v1Mirror();
    await m.publish(signer, [a], { version: 42 });
    const dir = tempDir();
    const agent = agentFor(dir, {}, m);

    // Act 1: v1 only
    const v1 = await agent.syncOnce();

    // Act 2: the same publish appears in v2 (index versions continue v1's)
    await m.publishIndex(signer, [a], { version: 42 });
    const v2 = await agent.syncOnce();
    const good = snapshot(dir);

    // Act 3: the index disappears; latest.json is still there
    m.overrides.set(`/${v2Keys.index}`, (_req, res) => void res.writeHead(404).end());
    const hidden = await codeOf(agent.syncOnce());
    const hiddenAfterRestart = await codeOf(agentFor(dir, {}, m).syncOnce());

    // Assess
    expect(v1).toMatchObject({ format: 'v1', version: 42, downloaded: 1 });
    expect(v2).toMatchObject({ format: 'v2', version: 42, downloaded: 0, cached: 1 });
    expect(hidden).toBe('NOT_FOUND');
    expect(hiddenAfterRestart).toBe('NOT_FOUND');
    expect(snapshot(dir)).toEqual(good);
    const state = JSON.parse(readFileSync(join(dir, 'agent-state.json'), 'utf8'));
    expect(state).toMatchObject({ version: 42, index: { version: 42 } });
  });

  it('refuses a first index older than the last v1 manifest accepted (ROLLBACK)', async () => {
    // Prepare
    const { m, a } = await v1Mirror();
    await m.publish(signer, [a], { version: 42 });
    const dir = tempDir();
    await agentFor(dir, {}, m).syncOnce();
    const good = snapshot(dir);
    await m.publishIndex(signer, [a], { version: 41 });

    // Act
    const code = await codeOf(agentFor(dir, {}, m).syncOnce());

    // Assess
    expect(code).toBe('ROLLBACK');
    expect(snapshot(dir)).toEqual(good);
  });

  it('a v1 manifest is still verified as before: a tampered one is refused', async () => {
    // Prepare
    const { m, a } = await v1Mirror();
    const other = newSigner();
    m.put('manifests/latest.json', (await signManifest(payloadOf([a], { version: 42 }), other)).bytes);

    // Act
    const code = await codeOf(agentFor(tempDir(), {}, m).syncOnce());

    // Assess
    expect(code).toBe('UNKNOWN_KEY');
  });
});
