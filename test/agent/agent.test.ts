import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import { HttpClient } from '../../shared/agent/http.ts';
import { runAgentLoop, STATE_FILE, type SyncResult, WasmMirrorAgent } from '../../shared/agent/index.ts';
import { ModuleCache } from '../../shared/agent/module-cache.ts';
import { StateFile } from '../../shared/agent/state.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { isWasmMirrorError, type WasmMirrorError } from '../../shared/core/errors.ts';
import {
  loadTrustedKeys,
  renderKeysJson,
  signManifest,
  type TrustedKey,
} from '../../shared/core/manifest/index.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { type AttackContext, attackCases } from '../manifest/attacks.ts';
import { newSigner, payloadOf, sha256Hex, T0, trusted } from '../manifest/helpers.ts';
import { type Override, TestMirror, wasmBytes } from './mirror-server.ts';

const NOW = new Date(T0.getTime() + 3600e3);
const fixedClock = (at: Date) => ({ now: () => at });

let mirror: TestMirror;
let signer: LocalKeySigner;
let keys: TrustedKey[];
let modsV42: ManifestModule[];
let goodBytes: Uint8Array;
const dirs: string[] = [];
const agents: WasmMirrorAgent[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'wm-agent-'));
  dirs.push(d);
  return d;
}

function agentFor(dir: string, extra: Partial<ConstructorParameters<typeof WasmMirrorAgent>[0]> = {}) {
  const a = new WasmMirrorAgent({
    mirrorUrl: mirror.url,
    mirrorName: 'prod-mesh',
    trustedKeys: keys,
    dir,
    clock: fixedClock(NOW),
    ...extra,
  });
  agents.push(a);
  return a;
}

/** Every file under dir (modules, manifest.json) with its sha256: what proxies could read. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else if (e.name !== 'agent-state.json')
        out[`${prefix}${e.name}`] = sha256Hex(readFileSync(join(d, e.name)));
    }
  };
  walk(dir, '');
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isWasmMirrorError(err)) return err.code;
    throw err;
  }
  return 'OK';
}

/** A directory holding the good v42 set, and its snapshot. */
async function syncedDir() {
  mirror.overrides.clear();
  mirror.put('manifests/latest.json', goodBytes);
  const dir = tempDir();
  const agent = agentFor(dir);
  const r = await agent.syncOnce();
  expect(r.version).toBe(42);
  const before = snapshot(dir);
  expect(Object.keys(before)).toHaveLength(3);
  return { dir, agent, before };
}

beforeAll(async () => {
  mirror = await new TestMirror().start();
  signer = newSigner();
  keys = [await trusted(signer)];
  modsV42 = [
    mirror.addModule('ghcr.io/acme/basic-auth', wasmBytes('basic-auth', 3000)),
    mirror.addModule('ghcr.io/acme/rate-limit', wasmBytes('rate-limit', 70_000)),
  ];
  goodBytes = await mirror.publish(signer, modsV42);
});

afterEach(() => {
  mirror.overrides.clear();
});

afterAll(async () => {
  for (const a of agents) a.close();
  await mirror.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('agent sync', () => {
  it('downloads the listed modules, writes manifest.json and pins the version; resync is one 304', async () => {
    // Prepare
    mirror.put('manifests/latest.json', goodBytes);
    const dir = tempDir();
    const agent = agentFor(dir);

    // Act
    const first = await agent.syncOnce();
    mirror.requests = [];
    const again = await agent.syncOnce();
    await agent.metrics.collect();
    const text = await agent.metrics.render();

    // Assess
    expect(first).toMatchObject({
      version: 42,
      downloaded: 2,
      cached: 0,
      notModified: false,
      accepted: true,
    });
    for (const m of modsV42) {
      expect(sha256Hex(readFileSync(join(dir, 'modules/sha256', `${m.sha256}.wasm`)))).toBe(m.sha256);
    }
    const manifestJson = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifestJson.version).toBe(42);
    const state = JSON.parse(readFileSync(join(dir, 'agent-state.json'), 'utf8'));
    expect(state.version).toBe(42);
    // A mirror without v2: the index is asked for (404), then v1's latest.json answers 304.
    expect(again).toMatchObject({
      version: 42,
      format: 'v1',
      notModified: true,
      downloaded: 0,
      cached: 2,
      requests: 2,
    });
    expect(mirror.requests).toEqual(['/manifests/v2/index.json', '/manifests/latest.json']);
    expect(text).toContain(
      '# HELP istio_agent_wasm_cache_entries Wasm modules in the local cache directory.',
    );
    expect(text).toContain('istio_agent_wasm_cache_entries 2');
    expect(text).toContain('istio_agent_wasm_cache_lookup_count{hit="true"} 2');
    expect(text).toContain('istio_agent_wasm_remote_fetch_count{result="success"} 2');
    expect(text).toContain('wasm_mirror_manifest_version 42');
    expect(text).toMatch(/wasm_mirror_manifest_expiry_seconds 169200\n/);
  });

  it('downloads only selected modules', async () => {
    mirror.put('manifests/latest.json', goodBytes);
    const dir = tempDir();
    const r = await agentFor(dir, { select: ['ghcr.io/*/rate-*'] }).syncOnce();
    expect(r.downloaded).toBe(1);
    expect(readdirSync(join(dir, 'modules/sha256'))).toEqual([`${modsV42[1]!.sha256}.wasm`]);
    const tagged = await agentFor(tempDir(), { select: ['ghcr.io/**:2.*'] }).syncOnce();
    expect(tagged.downloaded).toBe(0);
  });

  it('replaces a cached file whose bytes were changed on disk', async () => {
    const { dir, before } = await syncedDir();
    const file = join(dir, 'modules/sha256', `${modsV42[0]!.sha256}.wasm`);
    writeFileSync(file, wasmBytes('tampered', 3000));
    const r = await agentFor(dir).syncOnce();
    expect(r.downloaded).toBe(1);
    expect(snapshot(dir)).toEqual(before);
  });

  it('fails closed on a corrupt state file and leaves the modules alone', async () => {
    const { dir, before } = await syncedDir();
    writeFileSync(join(dir, 'agent-state.json'), '{"format":1,"version":"42"');
    expect(await codeOf(agentFor(dir).syncOnce())).toBe('STATE_CORRUPT');
    writeFileSync(join(dir, 'agent-state.json'), '{"format":1,"version":42,"version":41}');
    expect(await codeOf(agentFor(dir).syncOnce())).toBe('STATE_CORRUPT');
    expect(snapshot(dir)).toEqual(before);
  });

  it('remembers the accepted version across restarts (rollback after restart)', async () => {
    const { dir } = await syncedDir();
    mirror.put(
      'manifests/latest.json',
      await signManifest(payloadOf(modsV42, { version: 41 }), signer).then((s) => s.bytes),
    );
    expect(await codeOf(agentFor(dir).syncOnce())).toBe('ROLLBACK');
  });

  it('keeps unlisted modules for the grace period, then removes them, never a listed one', async () => {
    const { dir } = await syncedDir();
    const [basic, rate] = modsV42 as [ManifestModule, ManifestModule];
    mirror.put(
      'manifests/latest.json',
      (await signManifest(payloadOf([basic], { version: 43 }), signer)).bytes,
    );
    const rateFile = join(dir, 'modules/sha256', `${rate.sha256}.wasm`);
    const r1 = await agentFor(dir).syncOnce();
    expect(r1).toMatchObject({ version: 43, removed: 0 });
    expect(existsSync(rateFile)).toBe(true);
    const later = new Date(NOW.getTime() + 23 * 3600e3);
    expect((await agentFor(dir, { clock: fixedClock(later) }).syncOnce()).removed).toBe(0);
    const after = new Date(NOW.getTime() + 24 * 3600e3 + 1000);
    expect((await agentFor(dir, { clock: fixedClock(after) }).syncOnce()).removed).toBe(1);
    expect(existsSync(rateFile)).toBe(false);
    expect(existsSync(join(dir, 'modules/sha256', `${basic.sha256}.wasm`))).toBe(true);
  });

  it('bounds a manifest that trickles in (TIMEOUT) and keeps the last good set', async () => {
    const { dir, before } = await syncedDir();
    let timer: NodeJS.Timeout | undefined;
    mirror.overrides.set('/manifests/latest.json', (_req, res) => {
      res.writeHead(200);
      timer = setInterval(() => res.write('['), 20);
      res.on('close', () => clearInterval(timer));
    });
    const started = performance.now();
    expect(await codeOf(agentFor(dir, { manifestTimeoutMs: 300 }).syncOnce())).toBe('TIMEOUT');
    expect(performance.now() - started).toBeLessThan(2000);
    clearInterval(timer);
    expect(snapshot(dir)).toEqual(before);
  });

  it('answers a mirror that is down with MIRROR_UNAVAILABLE and counts a manifest failure', async () => {
    // Prepare
    const { dir, before } = await syncedDir();
    const agent = agentFor(dir, { mirrorUrl: 'http://127.0.0.1:9' });

    // Act
    const code = await codeOf(agent.syncOnce());

    // Assess
    expect(code).toBe('MIRROR_UNAVAILABLE');
    expect(await agent.metrics.render()).toContain(
      'istio_agent_wasm_remote_fetch_count{result="manifest_failure"} 1',
    );
    expect(snapshot(dir)).toEqual(before);
  });

  it('never removes a listed module, even one the agent does not select', async () => {
    const { dir, before } = await syncedDir();
    const later = new Date(NOW.getTime() + 72 * 3600e3);
    const narrowed = agentFor(dir, {
      select: ['ghcr.io/acme/basic-auth'],
      clock: fixedClock(later),
      maxSkewMs: 0,
    });
    mirror.put(
      'manifests/latest.json',
      (await signManifest(payloadOf(modsV42, { version: 43, issuedAt: later }), signer)).bytes,
    );
    expect((await narrowed.syncOnce()).removed).toBe(0);
    expect((await narrowed.syncOnce()).removed).toBe(0);
    const files = (snap: Record<string, string>) => Object.keys(snap).filter((k) => k.startsWith('modules/'));
    expect(files(snapshot(dir))).toEqual(files(before));
  });

  it('retries with backoff in interval mode and keeps going', async () => {
    // Prepare
    mirror.put('manifests/latest.json', goodBytes);
    const agent = agentFor(tempDir());
    const results: (SyncResult | WasmMirrorError)[] = [];
    const waits: number[] = [];
    const controller = new AbortController();
    let fail = true;
    mirror.overrides.set('/manifests/latest.json', (_req, res) => {
      if (fail) {
        fail = false;
        return void res.writeHead(503).end();
      }
      mirror.overrides.delete('/manifests/latest.json');
      res
        .writeHead(200, { 'content-length': goodBytes.length, etag: `"${sha256Hex(goodBytes)}"` })
        .end(goodBytes);
    });

    // Act
    await runAgentLoop(agent, {
      intervalMs: 20,
      signal: controller.signal,
      random: () => 0.5,
      // Records each wait instead of sleeping through the 1 s backoff.
      sleep: async (ms) => void waits.push(ms),
      onResult: (r) => {
        results.push(r);
        if (results.length === 3) controller.abort();
      },
    });

    // Assess
    expect(isWasmMirrorError(results[0], 'MIRROR_UNAVAILABLE')).toBe(true);
    expect((results[1] as SyncResult).version).toBe(42);
    expect((results[2] as SyncResult).notModified).toBe(true);
    expect(waits[0]).toBe(1000); // first backoff step is 1 s
    expect(waits[1]).toBe(20); // then the interval again
  });
});

describe('attacks on the agent keep the last good modules in place', () => {
  for (const attack of attackCases) {
    it(`${attack.name}: ${attack.code}`, async () => {
      // Prepare
      const { dir, agent, before } = await syncedDir();
      const ctx: AttackContext = { signer, good: payloadOf(modsV42), goodBytes, now: NOW };
      const built = await attack.build(ctx);
      mirror.put('manifests/latest.json', built.bytes);
      const target = built.trustedKeys ? agentFor(dir, { trustedKeys: built.trustedKeys }) : agent;

      // Act
      const code = await codeOf(target.syncOnce());

      // Assess
      expect(code).toBe(attack.code);
      expect(snapshot(dir)).toEqual(before);
      expect(await target.metrics.render()).toContain(
        `wasm_mirror_verification_failures_total{code="${attack.code}"} 1`,
      );
    });
  }

  /** Publishes v43 adding module C, whose download the override breaks. */
  async function brokenModule(
    override: (bytes: Uint8Array) => Parameters<typeof mirror.overrides.set>[1],
    options: Partial<ConstructorParameters<typeof WasmMirrorAgent>[0]> = {},
  ) {
    const { dir, before } = await syncedDir();
    const agent = agentFor(dir, options);
    const cBytes = wasmBytes('module-c', 100_000);
    const c = mirror.addModule('ghcr.io/acme/zz-new', cBytes);
    mirror.put(
      'manifests/latest.json',
      (await signManifest(payloadOf([...modsV42, c], { version: 43 }), signer)).bytes,
    );
    mirror.overrides.set(`/modules/sha256/${c.sha256}.wasm`, override(cBytes));
    const started = performance.now();
    const code = await codeOf(agent.syncOnce());
    const after = snapshot(dir);
    expect(after).toEqual(before);
    expect(readdirSync(join(dir, 'modules/sha256')).filter((n) => n.startsWith('.tmp'))).toEqual([]);
    return { code, ms: performance.now() - started, agent };
  }

  it('module bytes that do not match: HASH_MISMATCH', async () => {
    // Prepare
    const flipOneBit =
      (bytes: Uint8Array): Override =>
      (_req, res) => {
        const evil = Buffer.from(bytes);
        evil[500] = (evil[500] ?? 0) ^ 1;
        res.writeHead(200, { 'content-length': evil.length }).end(evil);
      };

    // Act
    const r = await brokenModule(flipOneBit);

    // Assess
    expect(r.code).toBe('HASH_MISMATCH');
    expect(await r.agent.metrics.render()).toContain(
      'istio_agent_wasm_remote_fetch_count{result="checksum_mismatched"} 1',
    );
  });

  it('a download cut off mid-body: MIRROR_UNAVAILABLE, a download failure and not tampering', async () => {
    // Act
    const r = await brokenModule((bytes) => (_req, res) => {
      res.writeHead(200, { 'content-length': bytes.length });
      res.write(bytes.subarray(0, 4000), () => res.destroy());
    });

    // Assess
    expect(r.code).toBe('MIRROR_UNAVAILABLE');
    const text = await r.agent.metrics.render();
    expect(text).toContain('istio_agent_wasm_remote_fetch_count{result="download_failure"} 1');
    expect(text).not.toContain('wasm_mirror_verification_failures_total');
  });

  it('a chunked body that ends short: LENGTH_MISMATCH', async () => {
    const r = await brokenModule((bytes) => (_req, res) => {
      res.writeHead(200);
      res.end(Buffer.from(bytes.subarray(0, 4000)));
    });
    expect(r.code).toBe('LENGTH_MISMATCH');
    expect(await r.agent.metrics.render()).toContain(
      'wasm_mirror_verification_failures_total{code="LENGTH_MISMATCH"} 1',
    );
  });

  it('a download that stalls: TIMEOUT within the stall timeout, not tampering', async () => {
    // Prepare: one mirror sends headers and part of the body, then nothing; another sends no
    // headers at all. Both keep their sockets open.
    const afterHeaders: Override = (_req, res) => {
      res.writeHead(200, { 'content-length': 100_000 });
      res.write(Buffer.alloc(1000, 0));
    };
    const beforeHeaders: Override = () => {};

    for (const override of [afterHeaders, beforeHeaders]) {
      // Act
      const r = await brokenModule(() => override, { stallTimeoutMs: 300 });

      // Assess: far sooner than the 30 s socket idle timeout, and counted as a download failure
      expect(r.code).toBe('TIMEOUT');
      expect(r.ms).toBeLessThan(3000);
      const text = await r.agent.metrics.render();
      expect(text).toContain('istio_agent_wasm_remote_fetch_count{result="download_failure"} 1');
      expect(text).toContain('istio_agent_wasm_remote_fetch_count{result="checksum_mismatched"} 0');
      expect(text).not.toContain('wasm_mirror_verification_failures_total');
    }
  });

  it('an endless body: LENGTH_MISMATCH, stopped at the listed size', async () => {
    let sent = 0;
    const r = await brokenModule(() => (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 7);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      res.on('close', () => {});
      pump();
    });
    expect(r.code).toBe('LENGTH_MISMATCH');
    expect(r.ms).toBeLessThan(3000);
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  it('a lying Content-Length: LENGTH_MISMATCH before reading the body', async () => {
    const r = await brokenModule((bytes) => (_req, res) => {
      res.writeHead(200, { 'content-length': bytes.length + 1 });
      res.end(Buffer.concat([bytes, Buffer.of(0)]));
    });
    expect(r.code).toBe('LENGTH_MISMATCH');
    const short = await brokenModule((bytes) => (_req, res) => {
      res.writeHead(200, { 'content-length': 10 });
      res.end(Buffer.from(bytes.subarray(0, 10)));
    });
    expect(short.code).toBe('LENGTH_MISMATCH');
  });

  it('a 1 GB manifest: MANIFEST_TOO_LARGE, fast and without buffering it', async () => {
    const { dir, agent, before } = await syncedDir();
    let sent = 0;
    const GB = 1024 ** 3;
    for (const declare of [true, false]) {
      mirror.overrides.set('/manifests/latest.json', (_req, res) => {
        res.writeHead(200, declare ? { 'content-length': GB } : {});
        const chunk = Buffer.alloc(256 * 1024, 0x5b);
        const pump = () => {
          while (!res.destroyed && sent < GB && res.write(chunk)) sent += chunk.length;
          if (!res.destroyed && sent < GB) res.once('drain', pump);
        };
        pump();
      });
      const heapBefore = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
      const started = performance.now();
      expect(await codeOf(agent.syncOnce())).toBe('MANIFEST_TOO_LARGE');
      expect(performance.now() - started).toBeLessThan(3000);
      const grown = process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers - heapBefore;
      expect(grown).toBeLessThan(200 * 1024 * 1024);
    }
    expect(sent).toBeLessThan(256 * 1024 * 1024);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe('crash leftovers', () => {
  it('removes a previous process’s temp files at start, even when that sync fails', async () => {
    // Prepare: what a process killed mid-write leaves, all of it fresh; then the mirror goes down
    const { dir, before } = await syncedDir();
    const leftovers = [
      join(dir, 'modules/sha256', `.tmp-${modsV42[0]!.sha256}-${randomUUID()}`),
      join(dir, 'modules/sha256', `.tmp-${'e'.repeat(64)}-${randomUUID()}`),
      join(dir, `.tmp-manifest.json-${randomUUID()}`),
      join(dir, `.tmp-agent-state.json-${randomUUID()}`),
    ];
    for (const file of leftovers) writeFileSync(file, 'partial');
    mirror.overrides.set('/manifests/latest.json', (_req, res) => void res.writeHead(503).end());

    // Act
    const code = await codeOf(agentFor(dir).syncOnce());

    // Assess: the leftovers are gone, everything proxies read is as it was
    expect(code).toBe('MIRROR_UNAVAILABLE');
    for (const file of leftovers) expect(existsSync(file), file).toBe(false);
    expect(snapshot(dir)).toEqual(before);
  });

  it('never sweeps the temp file of a download in progress', async () => {
    // Prepare: a module whose body the mirror holds back halfway
    const dir = tempDir();
    const bytes = wasmBytes('slow', 50_000);
    const m = mirror.addModule('ghcr.io/acme/slow', bytes);
    let finishBody!: () => void;
    const heldBack = new Promise<void>((resolve) => (finishBody = resolve));
    mirror.overrides.set(`/modules/sha256/${m.sha256}.wasm`, (_req, res) => {
      res.writeHead(200, { 'content-length': bytes.length });
      res.write(Buffer.from(bytes.subarray(0, 1000)));
      void heldBack.then(() => res.end(Buffer.from(bytes.subarray(1000))));
    });
    const http = new HttpClient({ maxSockets: 2, idleTimeoutMs: 30_000 });
    const modules = join(dir, 'modules/sha256');
    const cache = new ModuleCache({
      dir: modules,
      mirrorUrl: mirror.url,
      http,
      state: new StateFile(join(dir, STATE_FILE)),
      gcGraceMs: 0,
      stallTimeoutMs: 10_000,
      logger: silentLogger,
    });
    await cache.ensureDir();
    const temps = () => readdirSync(modules).filter((n) => n.startsWith('.tmp-'));

    try {
      const filling = cache.fill([m], 1, {});
      for (let i = 0; i < 200 && temps().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(temps()).toHaveLength(1);

      // Act
      await cache.sweepTemps();
      await cache.collectGarbage(new Set([m.sha256]), NOW);
      const during = temps();
      finishBody();
      const filled = await filling;

      // Assess
      expect(during).toHaveLength(1);
      expect(filled).toMatchObject({ downloaded: 1, failures: [] });
      expect(readdirSync(modules)).toEqual([`${m.sha256}.wasm`]);
    } finally {
      finishBody();
      http.close();
    }
  });
});

describe('key rotation end to end', () => {
  it('accepts the new key while both are trusted, then refuses the retired one', async () => {
    const { dir, before } = await syncedDir();
    const next = newSigner();
    const bothJson = renderKeysJson([
      { publicKey: await signer.publicKeySpki() },
      { publicKey: await next.publicKeySpki() },
    ]);
    mirror.put(
      'manifests/latest.json',
      (await signManifest(payloadOf(modsV42, { version: 43 }), next)).bytes,
    );
    const rotating = agentFor(dir, { trustedKeys: loadTrustedKeys(bothJson) });
    expect((await rotating.syncOnce()).version).toBe(43);

    // The old key is retired: notAfter in the past. The new key keeps working...
    const retiredJson = renderKeysJson([
      { publicKey: await signer.publicKeySpki(), notAfter: new Date(NOW.getTime() - 60_000) },
      { publicKey: await next.publicKeySpki() },
    ]);
    const retired = loadTrustedKeys(retiredJson);
    mirror.put(
      'manifests/latest.json',
      (await signManifest(payloadOf(modsV42, { version: 44 }), next)).bytes,
    );
    expect((await agentFor(dir, { trustedKeys: retired }).syncOnce()).version).toBe(44);
    // ...and a manifest signed by the retired key is refused, the modules staying as they were.
    mirror.put(
      'manifests/latest.json',
      (await signManifest(payloadOf(modsV42, { version: 45 }), signer)).bytes,
    );
    expect(await codeOf(agentFor(dir, { trustedKeys: retired }).syncOnce())).toBe('KEY_NOT_VALID');
    const after = snapshot(dir);
    expect(Object.keys(after).filter((k) => k.startsWith('modules/'))).toEqual(
      Object.keys(before).filter((k) => k.startsWith('modules/')),
    );
    expect(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')).version).toBe(44);
  });
});

describe('landed bytes', () => {
  it('keeps each module file byte-identical to the bytes the mirror serves', async () => {
    const { dir } = await syncedDir();
    const served = [wasmBytes('basic-auth', 3000), wasmBytes('rate-limit', 70_000)];
    for (const [i, m] of modsV42.entries()) {
      const landed = readFileSync(join(dir, 'modules/sha256', `${m.sha256}.wasm`));
      expect(landed.equals(Buffer.from(served[i]!)), m.name).toBe(true);
      // The file name is the sha256 of the landed bytes, computed here independently of the agent.
      expect(createHash('sha256').update(landed).digest('hex')).toBe(m.sha256);
    }
  });
});
