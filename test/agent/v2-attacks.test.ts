/**
 * The v2 attacks (v2-attacks.ts) against a real agent syncing from a test mirror: each fails
 * with its code, is counted as a verification failure, and leaves the last good modules,
 * manifest.json and walk file exactly as they were.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import { WasmMirrorAgent } from '../../shared/agent/index.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { type TrustedKey, v2Keys } from '../../shared/core/manifest/index.ts';
import { newSigner, T0, trusted } from '../manifest/helpers.ts';
import { codeOf, snapshot } from './agent-helpers.ts';
import { type PublishedIndex, TestMirror, wasmBytes } from './mirror-server.ts';
import { type V2AttackContext, v2AttackCases } from './v2-attacks.ts';

const NOW = new Date(T0.getTime() + 3600e3);

let mirror: TestMirror;
let signer: LocalKeySigner;
let keys: TrustedKey[];
let entries: ManifestModule[];
let good: PublishedIndex;
const dirs: string[] = [];
const agents: WasmMirrorAgent[] = [];

/** An agent whose clock the test can move. */
function agentFor(dir: string) {
  const clock = { at: NOW, now: () => clock.at };
  const a = new WasmMirrorAgent({
    mirrorUrl: mirror.url,
    mirrorName: 'prod-mesh',
    trustedKeys: keys,
    dir,
    clock,
  });
  agents.push(a);
  return { agent: a, clock };
}

beforeAll(async () => {
  mirror = await new TestMirror().start();
  signer = newSigner();
  keys = [await trusted(signer)];
  const shared = wasmBytes('shared', 500);
  entries = [
    mirror.addModule('ghcr.io/acme/basic-auth', wasmBytes('basic-auth', 3000)),
    mirror.addModule('ghcr.io/acme/rate-limit', wasmBytes('rate-limit', 70_000)),
    ...Array.from({ length: 400 }, (_, i) => mirror.addModule(`ghcr.io/fill/plugin-${i}`, shared)),
  ];
  good = await mirror.publishIndex(signer, entries, { version: 42 });
});

afterEach(() => mirror.overrides.clear());

afterAll(async () => {
  for (const a of agents) a.close();
  await mirror.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('v2 attacks on the agent keep the last good modules in place', () => {
  for (const attack of v2AttackCases) {
    it(`${attack.name}: ${attack.code}`, async () => {
      // Prepare: an agent in sync with version 42, every node walked
      mirror.put(v2Keys.index, good.bytes);
      const dir = mkdtempSync(join(tmpdir(), 'wm-agent-v2-attack-'));
      dirs.push(dir);
      const { agent: target, clock } = agentFor(dir);
      expect(await target.syncOnce()).toMatchObject({ version: 42, format: 'v2', downloaded: 3 });
      const before = snapshot(dir);
      const ctx: V2AttackContext = { mirror, signer, good, entries, now: NOW };
      const built = await attack.build(ctx);
      if (built?.now) clock.at = built.now;
      mirror.resetCounters();

      // Act
      const started = performance.now();
      const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
      const code = await codeOf(target.syncOnce());
      const grown = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heapBefore;

      // Assess
      expect(code).toBe(attack.code);
      expect(snapshot(dir)).toEqual(before);
      expect(await target.metrics.render()).toMatch(
        new RegExp(`wasm_mirror_verification_failures_total\\{code="${attack.code}"\\} [1-9]`),
      );
      expect(performance.now() - started).toBeLessThan(5000);
      if (built?.now) {
        expect(mirror.requests).toEqual([`/${v2Keys.index}`]);
        expect(mirror.notModified).toBe(1);
      }
      expect(grown).toBeLessThan(32 * 1024 * 1024);
    });
  }
});
