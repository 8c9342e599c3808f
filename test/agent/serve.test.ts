/**
 * The cluster tier: an agent serving what it holds (--serve) in the mirror's layout, byte for
 * byte, read-only; node agents syncing from it with the same verification, so a cluster agent
 * can neither forge nor roll back anything; and the CLI wiring of --serve and /readyz.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import { startServing, WasmMirrorAgent } from '../../shared/agent/index.ts';
import { parseListenAddress, startMetricsServer } from '../../shared/agent/metrics-server.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { renderKeysJson, type TrustedKey, v2Keys } from '../../shared/core/manifest/index.ts';
import { acceptsGzip, parseRange } from '../../shared/platform/http.ts';
import { newSigner, T0, trusted } from '../manifest/helpers.ts';
import { runCli } from '../support/index.ts';
import { codeOf, fixedClock, snapshot } from './agent-helpers.ts';
import { type PublishedIndex, signIndex, TestMirror, wasmBytes } from './mirror-server.ts';

const NOW = new Date(T0.getTime() + 3600e3);
const BASIC = 'ghcr.io/acme/basic-auth';
const RATE = 'ghcr.io/acme/rate-limit';
const ROOT = join(import.meta.dirname, '..', '..');

let upstream: TestMirror;
let signer: LocalKeySigner;
let keys: TrustedKey[];
let keysJson: string;
let entries: ManifestModule[];
let good: PublishedIndex;
const dirs: string[] = [];
const agents: WasmMirrorAgent[] = [];
const closers: (() => Promise<void>)[] = [];

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'wm-serve-'));
  dirs.push(d);
  return d;
}

function agentFor(
  mirrorUrl: string,
  dir: string,
  extra: Partial<ConstructorParameters<typeof WasmMirrorAgent>[0]> = {},
) {
  const a = new WasmMirrorAgent({
    mirrorUrl,
    mirrorName: 'prod-mesh',
    trustedKeys: keys,
    dir,
    clock: fixedClock(NOW),
    ...extra,
  });
  agents.push(a);
  return a;
}

/** A cluster agent in sync with the upstream mirror, serving its directory. */
async function clusterAgent(
  extra: Partial<ConstructorParameters<typeof WasmMirrorAgent>[0]> = {},
  from = upstream,
) {
  const dir = tempDir();
  const agent = agentFor(from.url, dir, { keepDocuments: true, ...extra });
  await agent.syncOnce();
  const serving = await startServing('127.0.0.1:0', dir);
  closers.push(serving.close);
  return { dir, agent, url: serving.url };
}

/** A raw GET (or other method), the target sent exactly as given. */
function raw(
  url: string,
  target: string,
  headers: Record<string, string> = {},
  method = 'GET',
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: hostname, port, path: target, method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  upstream = await new TestMirror().start();
  signer = newSigner();
  keys = [await trusted(signer)];
  keysJson = renderKeysJson([{ publicKey: await signer.publicKeySpki() }]);
  upstream.put('keys.json', keysJson);
  const shared = wasmBytes('shared', 400);
  entries = [
    upstream.addModule(BASIC, wasmBytes('basic-auth', 3000)),
    upstream.addModule(RATE, wasmBytes('rate-limit', 70_000)),
    ...Array.from({ length: 300 }, (_, i) => upstream.addModule(`ghcr.io/fill/plugin-${i}`, shared)),
  ];
  good = await upstream.publishIndex(signer, entries, { version: 42 });
});

afterEach(() => {
  upstream.overrides.clear();
  upstream.put(v2Keys.index, good.bytes);
});

afterAll(async () => {
  for (const close of closers) await close();
  for (const a of agents) a.close();
  await upstream.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('an agent serving what it holds', () => {
  it('serves the signed documents byte for byte; a node agent syncs from it alone', async () => {
    // Prepare
    const cluster = await clusterAgent();
    const nodeDir = tempDir();
    upstream.resetCounters();

    // Act
    const r = await agentFor(cluster.url, nodeDir).syncOnce();
    const index = await raw(cluster.url, `/${v2Keys.index}`);
    const anyNode = [...good.nodes.keys()][3]!;
    const node = await raw(cluster.url, `/${v2Keys.node(anyNode)}`);
    const keysServed = await raw(cluster.url, '/keys.json');

    // Assess
    expect(r).toMatchObject({ format: 'v2', version: 42, downloaded: 3, nodesFetched: good.nodes.size });
    expect(upstream.requests).toEqual([]); // the CDN sees only the cluster agent
    expect(index.body.equals(Buffer.from(good.bytes))).toBe(true);
    expect(node.body.equals(Buffer.from(good.nodes.get(anyNode)!))).toBe(true);
    expect(keysServed.body.toString()).toBe(keysJson);
    expect(readFileSync(join(nodeDir, 'manifest.json'))).toEqual(
      readFileSync(join(cluster.dir, 'manifest.json')),
    );
    for (const m of entries.slice(0, 3)) {
      const served = await raw(cluster.url, `/modules/sha256/${m.sha256}.wasm`);
      expect(served.body.length).toBe(m.size);
    }
  });

  it('answers conditional, compressed and range requests, and nothing outside the layout', async () => {
    // Prepare
    const { url, dir } = await clusterAgent();
    const basic = entries[0]!;
    const modulePath = `/modules/sha256/${basic.sha256}.wasm`;
    symlinkSync(join(dir, 'agent-state.json'), join(dir, 'modules/sha256', `${'e'.repeat(64)}.wasm`));

    // Act
    const plain = await raw(url, `/${v2Keys.index}`);
    const again = await raw(url, `/${v2Keys.index}`, { 'if-none-match': String(plain.headers.etag) });
    const gz = await raw(url, `/${v2Keys.index}`, { 'accept-encoding': 'gzip, br' });
    const gzAgain = await raw(url, `/${v2Keys.index}`, {
      'accept-encoding': 'gzip',
      'if-none-match': String(gz.headers.etag),
    });
    const refused = await raw(url, `/${v2Keys.index}`, { 'accept-encoding': 'gzip;q=0' });
    const part = await raw(url, modulePath, { range: 'bytes=10-19' });
    const tail = await raw(url, modulePath, { range: 'bytes=-5' });
    const beyond = await raw(url, modulePath, { range: 'bytes=99999-' });
    const staleIfRange = await raw(url, modulePath, { range: 'bytes=0-1', 'if-range': '"other"' });
    const moduleAgain = await raw(url, modulePath, { 'if-none-match': `"${basic.sha256}"` });
    const head = await raw(url, modulePath, {}, 'HEAD');
    const posted = await raw(url, `/${v2Keys.index}`, {}, 'POST');
    const outside = [
      '/',
      '/manifests/',
      '/manifests/v2/',
      '/manifests/v2/nodes/sha256/',
      '/modules/sha256/',
      '/manifest.json',
      '/agent-state.json',
      '/agent-tree.json',
      '/manifests/v2/index/42.json',
      '/manifests/v2/../../agent-state.json',
      `/modules/sha256/../../agent-state.json`,
      '/%2e%2e/agent-state.json',
      '/modules/sha256/%2e%2e%2f%2e%2e%2fagent-state.json',
      `/modules/sha256/${basic.sha256.toUpperCase()}.wasm`,
      `${modulePath}/`,
      `/modules/sha256/${'e'.repeat(64)}.wasm`,
      '//keys.json',
    ];
    const answers = await Promise.all(outside.map((p) => raw(url, p)));

    // Assess
    expect(plain).toMatchObject({ status: 200 });
    expect(plain.headers['content-type']).toBe('application/json');
    expect(again.status).toBe(304);
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers.etag).toBe(`W/${plain.headers.etag}`);
    expect(gunzipSync(gz.body).equals(plain.body)).toBe(true);
    expect(gzAgain.status).toBe(304);
    expect(refused.headers['content-encoding']).toBeUndefined();
    expect(part.status).toBe(206);
    expect(part.headers['content-range']).toBe(`bytes 10-19/${basic.size}`);
    expect(part.body.equals(readFileSync(join(dir, modulePath)).subarray(10, 20))).toBe(true);
    expect(tail.body).toHaveLength(5);
    expect(beyond.status).toBe(416);
    expect(staleIfRange.status).toBe(200);
    expect(staleIfRange.body).toHaveLength(basic.size);
    expect(moduleAgain.status).toBe(304);
    expect(head).toMatchObject({ status: 200 });
    expect(head.headers['content-length']).toBe(String(basic.size));
    expect(head.body).toHaveLength(0);
    expect(posted.status).toBe(405);
    expect(answers.map((a, i) => `${outside[i]} ${a.status}`)).toEqual(outside.map((p) => `${p} 404`));
  });

  it('a cluster agent cannot forge or roll back anything: node agents refuse and keep their set', async () => {
    // Prepare: a node agent in sync through the cluster agent, then a version 43 upstream
    const cluster = await clusterAgent();
    const nodeDir = tempDir();
    await agentFor(cluster.url, nodeDir).syncOnce();
    const before = snapshot(nodeDir);
    const basic2 = upstream.addModule(BASIC, wasmBytes('basic-auth-43', 3000), '2.0.0');
    const next = await upstream.publishIndex(signer, [...entries, basic2], { version: 43 });
    await cluster.agent.syncOnce();
    const served = (key: string) => join(cluster.dir, key);
    const newBin = [...next.nodes.keys()].find(
      (sha) => !good.nodes.has(sha) && Buffer.from(next.nodes.get(sha)!).toString().includes('"modules"'),
    )!;
    const tamperings: [string, () => () => void][] = [
      [
        'NODE_HASH_MISMATCH',
        () => {
          const path = served(v2Keys.node(newBin));
          const bytes = readFileSync(path);
          writeFileSync(path, Buffer.from(bytes.toString().replace('"2.0.0"', '"6.6.6"')));
          return () => writeFileSync(path, bytes);
        },
      ],
      [
        'SIGNATURE_INVALID',
        () => {
          const path = served(v2Keys.index);
          const bytes = readFileSync(path);
          const envelope = JSON.parse(bytes.toString());
          const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString());
          payload.version = 99;
          envelope.payload = Buffer.from(JSON.stringify(payload)).toString('base64');
          writeFileSync(path, JSON.stringify(envelope));
          return () => writeFileSync(path, bytes);
        },
      ],
      [
        'HASH_MISMATCH',
        () => {
          const path = served(`modules/sha256/${basic2.sha256}.wasm`);
          const bytes = readFileSync(path);
          writeFileSync(path, wasmBytes('forged', 3000));
          return () => writeFileSync(path, bytes);
        },
      ],
    ];

    for (const [expected, tamper] of tamperings) {
      // Act
      const restore = tamper();
      const fresh = agentFor(cluster.url, nodeDir);
      const code = await codeOf(fresh.syncOnce());
      restore();

      // Assess
      expect(code, expected).toBe(expected);
      expect(snapshot(nodeDir), expected).toEqual(before);
    }
    // Untampered, the node agent moves to 43; the cluster agent then serving 42's validly signed
    // index again, or an older one signed anew, is a rollback.
    expect((await agentFor(cluster.url, nodeDir).syncOnce()).version).toBe(43);
    const at43 = snapshot(nodeDir);
    for (const older of [good.bytes, await signIndex({ ...good.payload, version: 41 }, signer)]) {
      writeFileSync(served(v2Keys.index), older);
      expect(await codeOf(agentFor(cluster.url, nodeDir).syncOnce())).toBe('ROLLBACK');
      expect(snapshot(nodeDir)).toEqual(at43);
    }
  });

  it('serves only what it selected: a node agent selecting outside it fails and keeps its set', async () => {
    // Prepare
    const cluster = await clusterAgent({ select: [BASIC] });
    const inside = tempDir();
    const outside = tempDir();

    // Act
    const ok = await agentFor(cluster.url, inside, { select: [BASIC] }).syncOnce();
    const refused = await codeOf(agentFor(cluster.url, outside, { select: [RATE] }).syncOnce());

    // Assess
    expect(ok).toMatchObject({ selected: 1, downloaded: 1 });
    expect(refused).toBe('NODE_MISSING');
    expect(readdirSync(join(outside, 'modules/sha256'))).toEqual([]);
  });

  it('serves v1 from a mirror without v2', async () => {
    // Prepare
    const v1 = await new TestMirror().start();
    closers.push(() => v1.stop());
    const a = v1.addModule(BASIC, wasmBytes('basic-auth', 3000));
    const latest = await v1.publish(signer, [a], { version: 42 });
    const cluster = await clusterAgent({}, v1);

    // Act
    const r = await agentFor(cluster.url, tempDir()).syncOnce();
    const served = await raw(cluster.url, '/manifests/latest.json');

    // Assess
    expect(r).toMatchObject({ format: 'v1', version: 42, downloaded: 1 });
    expect(served.body.equals(Buffer.from(latest))).toBe(true);
    expect((await raw(cluster.url, `/${v2Keys.index}`)).status).toBe(404);
  });

  it('keeps the previous walk’s nodes for agents still reading it, then drops them', async () => {
    // Prepare
    const { agent, dir } = await clusterAgent();
    const nodesOnDisk = () =>
      new Set(readdirSync(join(dir, 'manifests/v2/nodes/sha256')).map((n) => n.slice(0, 64)));
    const v43 = await upstream.publishIndex(signer, [...entries, { ...entries[9]!, tag: '43' }], {
      version: 43,
    });
    const v44 = await upstream.publishIndex(signer, [...entries, { ...entries[9]!, tag: '44' }], {
      version: 44,
    });
    upstream.put(v2Keys.index, v43.bytes);

    // Act
    await agent.syncOnce();
    const after43 = nodesOnDisk();
    upstream.put(v2Keys.index, v44.bytes);
    await agent.syncOnce();
    const after44 = nodesOnDisk();

    // Assess
    const only = (a: PublishedIndex, b: PublishedIndex) => [...a.nodes.keys()].filter((k) => !b.nodes.has(k));
    expect(only(good, v43)).toHaveLength(2);
    for (const sha of good.nodes.keys()) expect(after43.has(sha)).toBe(true);
    for (const sha of only(good, v44)) expect(after44.has(sha)).toBe(false);
    for (const sha of v43.nodes.keys()) expect(after44.has(sha)).toBe(true);
    expect(after44.size).toBe(new Set([...v43.nodes.keys(), ...v44.nodes.keys()]).size);
  });

  it('after a restart serves what it held, re-checking node files and fetching a damaged one again', async () => {
    // Prepare
    const { dir } = await clusterAgent();
    const victim = [...good.nodes.keys()][0]!;
    writeFileSync(join(dir, v2Keys.node(victim)), '{"cut":');
    const restarted = agentFor(upstream.url, dir, { keepDocuments: true });
    const fresh = agentFor(upstream.url, tempDir(), { keepDocuments: true });

    // Act
    const readyBefore = [await restarted.ready(), await fresh.ready()];
    const r = await restarted.syncOnce();

    // Assess
    expect(readyBefore).toEqual([true, false]);
    expect(r).toMatchObject({ version: 42, nodesFetched: 1, downloaded: 0 });
    expect(readFileSync(join(dir, v2Keys.node(victim)))).toEqual(Buffer.from(good.nodes.get(victim)!));
  });

  it('unit pieces: listen addresses, Accept-Encoding and ranges', () => {
    expect(parseListenAddress('8080', '--serve')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(() => parseListenAddress('nope', '--serve')).toThrow(/--serve must be HOST:PORT/);
    expect([
      acceptsGzip('gzip'),
      acceptsGzip('br, gzip;q=0.5'),
      acceptsGzip('gzip;q=0'),
      acceptsGzip(undefined),
    ]).toEqual([true, true, false, false]);
    expect(parseRange('bytes=0-', 10)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=5-2', 10)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-1,4-5', 10)).toBeUndefined();
  });
});

describe('wasm-mirror agent --serve', () => {
  const cli = (...argv: string[]) => runCli(argv);

  it('refuses --serve with --once', async () => {
    const r = await cli(
      'agent',
      '--mirror-url',
      upstream.url,
      '--mirror-name',
      'prod-mesh',
      '--trusted-keys',
      'k',
      '--dir',
      tempDir(),
      '--once',
      '--serve',
      '127.0.0.1:0',
    );
    expect(r.code).toBe(2);
    expect(r.err).toContain('--serve');
  });

  it('a running cluster agent serves node agents and reports ready once in sync', async () => {
    // Prepare: a mirror on real time, since the process uses the system clock
    const live = await new TestMirror().start();
    closers.push(() => live.stop());
    const a = live.addModule(BASIC, wasmBytes('basic-auth', 3000));
    await live.publishIndex(signer, [a], { version: 1, issuedAt: new Date(Date.now() - 60_000) });
    const work = tempDir();
    writeFileSync(join(work, 'keys.json'), keysJson);
    const child: ChildProcess = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'wasm-mirror.mjs'),
        'agent',
        '--mirror-url',
        live.url,
        '--mirror-name',
        'prod-mesh',
        '--trusted-keys',
        join(work, 'keys.json'),
        '--dir',
        join(work, 'cluster'),
        '--interval',
        '200ms',
        '--serve',
        '127.0.0.1:0',
        '--metrics-addr',
        '127.0.0.1:0',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    closers.push(async () => {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    });
    let log = '';
    const urls = await new Promise<{ serve: string; metrics: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no addresses within 20 s:\n${log}`)), 20_000);
      child.stderr?.on('data', (c: Buffer) => {
        log += c.toString();
        const serve = /serving the mirror layout url=(\S+)/.exec(log)?.[1];
        const metrics = /serving metrics url=(\S+)/.exec(log)?.[1];
        if (serve && metrics) {
          clearTimeout(timer);
          resolve({ serve, metrics: metrics.replace(/\/metrics$/, '') });
        }
      });
    });

    // Act
    let ready = 0;
    for (let i = 0; i < 200 && ready !== 200; i++) {
      ready = (await fetch(`${urls.metrics}/readyz`)).status;
      if (ready !== 200) await new Promise((r) => setTimeout(r, 50));
    }
    const node = new WasmMirrorAgent({
      mirrorUrl: urls.serve,
      mirrorName: 'prod-mesh',
      trustedKeys: keys,
      dir: tempDir(),
    });
    agents.push(node);
    const r = await node.syncOnce();
    child.kill('SIGTERM');

    // Assess
    expect(ready).toBe(200);
    expect(r).toMatchObject({ format: 'v2', version: 1, downloaded: 1 });
    expect(await exited).toBe(0);
  });

  it('/readyz answers 503 until the agent has a set to work from', async () => {
    // Prepare
    const dir = tempDir();
    const agent = agentFor(upstream.url, dir);
    const server = await startMetricsServer('127.0.0.1:0', agent.metrics, { ready: () => agent.ready() });
    closers.push(server.close);
    const readyz = server.url.replace(/\/metrics$/, '/readyz');

    // Act
    const before = (await fetch(readyz)).status;
    await agent.syncOnce();
    const after = (await fetch(readyz)).status;
    unlinkSync(join(dir, 'manifest.json'));
    const restarted = agentFor(upstream.url, dir);
    const restartedReady = await restarted.ready();

    // Assess
    expect([before, after, restartedReady]).toEqual([503, 200, false]);
  });
});
