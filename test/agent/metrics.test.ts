/**
 * The agent's metrics as Prometheus sees them: a real `wasm-mirror agent --interval …
 * --metrics-addr 127.0.0.1:0` process against a test mirror, scraped over HTTP after a sync, a
 * cache hit, a download failure and a checksum mismatch; and the DaemonSet's scrape settings and
 * the README's alerts, which must name what the agent exports.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import { AGENT_METRICS } from '../../shared/agent/index.ts';
import { renderKeysJson } from '../../shared/core/manifest/index.ts';
import { newSigner } from '../manifest/helpers.ts';
import { type Override, TestMirror, wasmBytes } from './mirror-server.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'wasm-mirror.mjs');

/** `name{a="1",b="2"}` → value, from Prometheus text exposition (the registry sorts label names). */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function key(name: string, labels: Record<string, string> = {}): string {
  const names = Object.keys(labels).sort();
  return names.length === 0 ? name : `${name}{${names.map((n) => `${n}="${labels[n]}"`).join(',')}}`;
}

interface RunningAgent {
  child: ChildProcess;
  metricsUrl: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

async function startAgent(args: string[]): Promise<RunningAgent> {
  const child = spawn(process.execPath, [BIN, 'agent', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stdout?.resume();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const metricsUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no metrics address within 20 s:\n${err}`)), 20_000);
    child.stderr?.on('data', (chunk: Buffer) => {
      err += chunk.toString();
      const m = /serving metrics url=(\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`agent exited with ${code}:\n${err}`)));
  });
  return { child, metricsUrl, stderr: () => err, exited };
}

describe('a running agent, scraped', () => {
  let mirror: TestMirror;
  let signer: LocalKeySigner;
  let work: string;
  let agent: RunningAgent | undefined;

  beforeAll(async () => {
    mirror = await new TestMirror().start();
    signer = newSigner();
    work = mkdtempSync(join(tmpdir(), 'wm-agent-metrics-'));
  });

  afterAll(async () => {
    if (agent && agent.child.exitCode === null) {
      agent.child.kill('SIGKILL');
      await agent.exited;
    }
    await mirror.stop();
    rmSync(work, { recursive: true, force: true });
  });

  /** Scrapes until `ready` holds for the samples, failing with the last scrape and the agent's log. */
  async function scrapeUntil(ready: (s: Map<string, number>) => boolean): Promise<string> {
    const deadline = Date.now() + 20_000;
    let text = '';
    while (Date.now() < deadline) {
      text = await (await fetch(agent!.metricsUrl)).text();
      if (ready(samples(text))) return text;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    throw new Error(`metrics never got there; last scrape:\n${text}\nagent log:\n${agent!.stderr()}`);
  }

  it('exports Istio’s series with Istio’s labels, and the wasm_mirror_ series beside them', async () => {
    // Prepare: two modules listed; real time, since the process uses the system clock
    const keysFile = join(work, 'keys.json');
    writeFileSync(keysFile, renderKeysJson([{ publicKey: await signer.publicKeySpki() }]));
    const a = mirror.addModule('ghcr.io/acme/basic-auth', wasmBytes('a', 3000));
    const b = mirror.addModule('ghcr.io/acme/rate-limit', wasmBytes('b', 5000));
    const issuedAt = new Date(Date.now() - 60_000);
    // As the publisher does while mirror.legacyManifest is on: the v2 index and v1 beside it.
    const publish = async (modules: (typeof a)[], version: number) => {
      await mirror.publish(signer, modules, { version, issuedAt });
      await mirror.publishIndex(signer, modules, { version, issuedAt });
    };
    await publish([a, b], 1);
    const fetches = (result: string) => key(AGENT_METRICS.remoteFetches, { result });
    const lookups = (hit: string) => key(AGENT_METRICS.cacheLookups, { hit });
    const entries = AGENT_METRICS.cacheEntries;
    const hashMismatches = key(AGENT_METRICS.verificationFailures, { code: 'HASH_MISMATCH' });

    // Act 1: the first sync downloads both
    agent = await startAgent([
      '--mirror-url',
      mirror.url,
      '--mirror-name',
      'prod-mesh',
      '--trusted-keys',
      keysFile,
      '--dir',
      join(work, 'agent'),
      '--interval',
      '200ms',
      '--stall-timeout',
      '500ms',
      '--metrics-addr',
      '127.0.0.1:0',
    ]);
    const synced = await scrapeUntil((s) => s.get(fetches('success')) === 2 && s.get(entries) === 2);

    // Assess 1: types, HELP, Istio's label values (all present from the start), our gauges
    expect(synced).toContain(`# TYPE ${AGENT_METRICS.cacheEntries} gauge`);
    expect(synced).toContain(`# TYPE ${AGENT_METRICS.cacheLookups} counter`);
    expect(synced).toContain(`# TYPE ${AGENT_METRICS.remoteFetches} counter`);
    expect(synced).toMatch(/^# HELP istio_agent_wasm_remote_fetch_count .+/m);
    // One name per series: the unprefixed names are not exported as well.
    expect(synced).not.toMatch(/^wasm_(cache|remote)_/m);
    let s = samples(synced);
    expect(s.get(lookups('false'))).toBe(2);
    expect(s.get(fetches('download_failure'))).toBe(0);
    expect(s.get(fetches('checksum_mismatched'))).toBe(0);
    expect(s.get(fetches('manifest_failure'))).toBe(0);
    expect(s.get(AGENT_METRICS.manifestVersion)).toBe(1);
    // The agent read v2: the index and its nodes, never v1's whole list.
    const manifestBytes = (document: string) => s.get(key(AGENT_METRICS.manifestBytes, { document }));
    expect(synced).toContain(`# TYPE ${AGENT_METRICS.manifestBytes} counter`);
    expect(manifestBytes('index')).toBeGreaterThan(0);
    expect(manifestBytes('node')).toBeGreaterThan(0);
    expect(manifestBytes('manifest')).toBe(0);
    expect(s.get(AGENT_METRICS.manifestExpiry)).toBeGreaterThan(47 * 3600);
    expect(s.get(AGENT_METRICS.lastSuccess)).toBeGreaterThanOrEqual(Math.floor(issuedAt.getTime() / 1000));
    expect(s.get(key(AGENT_METRICS.syncs, { result: 'success' }))).toBeGreaterThanOrEqual(1);
    expect(synced).not.toContain(AGENT_METRICS.verificationFailures);

    // Act 2: the next sync finds both on disk
    s = samples(await scrapeUntil((x) => (x.get(lookups('true')) ?? 0) >= 2));

    // Assess 2
    expect(s.get(lookups('false'))).toBe(2);
    expect(s.get(fetches('success'))).toBe(2);

    // Act 3: version 2 lists a third module, whose download stalls after the headers
    const cBytes = wasmBytes('c', 4000);
    const c = mirror.addModule('ghcr.io/acme/zz-new', cBytes);
    const cPath = `/modules/sha256/${c.sha256}.wasm`;
    const stall: Override = (_req, res) => {
      res.writeHead(200, { 'content-length': cBytes.length });
      res.write(Buffer.from(cBytes.subarray(0, 100)));
    };
    mirror.overrides.set(cPath, stall);
    await publish([a, b, c], 2);
    s = samples(await scrapeUntil((x) => (x.get(fetches('download_failure')) ?? 0) >= 1));

    // Assess 3: a download failure, not tampering; the modules in place stay
    expect(s.get(fetches('checksum_mismatched'))).toBe(0);
    expect(s.has(hashMismatches)).toBe(false);
    expect(s.get(AGENT_METRICS.manifestVersion)).toBe(2);
    expect(s.get(entries)).toBe(2);
    expect(s.get(key(AGENT_METRICS.syncs, { result: 'failure' }))).toBeGreaterThanOrEqual(1);

    // Act 4: the mirror serves other bytes for it
    const flipped = Buffer.from(cBytes);
    flipped[2000] = (flipped[2000] ?? 0) ^ 1;
    mirror.overrides.set(cPath, (_req, res) => {
      res.writeHead(200, { 'content-length': flipped.length }).end(flipped);
    });
    s = samples(await scrapeUntil((x) => (x.get(fetches('checksum_mismatched')) ?? 0) >= 1));

    // Assess 4: a checksum mismatch, counted as a verification failure by its code
    expect(s.get(hashMismatches)).toBeGreaterThanOrEqual(1);
    expect(s.get(entries)).toBe(2);

    // Act 5: the mirror recovers
    mirror.overrides.delete(cPath);
    s = samples(await scrapeUntil((x) => x.get(fetches('success')) === 3 && x.get(entries) === 3));

    // Assess 5
    expect(s.get(fetches('manifest_failure'))).toBe(0);
    expect(s.get(lookups('false'))).toBeGreaterThanOrEqual(3);

    // Act 6: SIGTERM stops the loop cleanly
    agent.child.kill('SIGTERM');

    // Assess 6
    expect(await agent.exited).toBe(0);
  });
});

describe('what operators scrape and alert on', () => {
  it('annotates the DaemonSet so a standard Prometheus scrapes the agent’s metrics port', () => {
    // Prepare
    const ds = parse(readFileSync(join(ROOT, 'infra/kubernetes/agent-daemonset.yaml'), 'utf8'));
    const pod = ds.spec.template;
    const container = pod.spec.containers.find((c: { name: string }) => c.name === 'agent');

    // Act
    const port = container.ports.find((p: { name: string }) => p.name === 'metrics')?.containerPort;
    const addr = container.args.find((a: string) => a.startsWith('--metrics-addr='));

    // Assess
    expect(pod.metadata.annotations).toMatchObject({
      'prometheus.io/scrape': 'true',
      'prometheus.io/port': String(port),
      'prometheus.io/path': '/metrics',
    });
    expect(addr).toBe(`--metrics-addr=0.0.0.0:${port}`);
    expect(container.livenessProbe.httpGet.port).toBe('metrics');
  });

  it('alerts in the README on series the agent exports', () => {
    // Prepare
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf('## Run agents in the mesh');
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));

    // Act
    const named = new Set(section.match(/\b(?:istio_agent|wasm_mirror)_[a-z_]+\b/g));
    const alerts = section.match(/- alert: \w+/g) ?? [];

    // Assess
    expect(alerts.length).toBeGreaterThanOrEqual(2);
    expect(named.size).toBeGreaterThan(0);
    for (const name of named) expect(Object.values(AGENT_METRICS)).toContain(name);
  });
});
