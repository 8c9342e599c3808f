import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { renderKeysJson, spkiToPem } from '../../shared/core/manifest/index.ts';
import { newSigner } from '../manifest/helpers.ts';
import { runCli } from '../support/index.ts';
import { TestMirror, wasmBytes } from './mirror-server.ts';

let mirror: TestMirror;
let signer: LocalKeySigner;
let mods: ManifestModule[];
let work: string;
let pemFile: string;
let keysJsonFile: string;

const cli = (...argv: string[]) => runCli(argv);

beforeAll(async () => {
  mirror = await new TestMirror().start();
  work = mkdtempSync(join(tmpdir(), 'wm-cli-'));
  signer = newSigner();
  pemFile = join(work, 'trusted.pem');
  writeFileSync(pemFile, spkiToPem(await signer.publicKeySpki()));
  keysJsonFile = join(work, 'keys.json');
  writeFileSync(keysJsonFile, renderKeysJson([{ publicKey: await signer.publicKeySpki() }]));
  mods = [
    mirror.addModule('ghcr.io/acme/basic-auth', wasmBytes('a', 500), '1.12.0'),
    mirror.addModule('ghcr.io/acme/basic-auth', wasmBytes('b', 600), '1.13.0'),
    mirror.addModule('127.0.0.1:5000/plugins/Rate_Limit', wasmBytes('c', 700), 'latest'),
  ];
  // Real time: the CLI uses the system clock.
  await mirror.publish(signer, mods, { version: 7, issuedAt: new Date(Date.now() - 60_000) });
});

afterAll(async () => {
  await mirror.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('wasm-mirror keygen', () => {
  it('writes a 0600 private key and its public half, and never overwrites', async () => {
    // Prepare
    const dir = join(work, 'keys');
    // Act / Assess
    const r = await cli('keygen', '--out', dir);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/keyid: +[0-9a-f]{64}/);
    expect(statSync(join(dir, 'signing-key.pem')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'signing-key.pub.pem'), 'utf8')).toContain('BEGIN PUBLIC KEY');
    const again = await cli('keygen', '--out', dir);
    expect(again.code).toBe(1);
    expect(again.err).toContain('ALREADY_EXISTS');
  });
});

describe('wasm-mirror verify', () => {
  it('verifies a URL and a file, printing the payload', async () => {
    // Act / Assess
    const r = await cli(
      'verify',
      `${mirror.url}/manifests/latest.json`,
      '--trusted-keys',
      pemFile,
      '--mirror-name',
      'prod-mesh',
    );
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out).version).toBe(7);
    expect(r.err).toContain('verified: mirror prod-mesh, version 7, 3 modules');
    const file = join(mirror.root, 'manifests/7.json');
    expect((await cli('verify', file, '--trusted-keys', keysJsonFile)).code).toBe(0);
  });

  it('exits 1 with the error code on failure and 2 on usage errors', async () => {
    // Act / Assess
    const wrong = await cli(
      'verify',
      join(mirror.root, 'manifests/7.json'),
      '--trusted-keys',
      pemFile,
      '--mirror-name',
      'x',
    );
    expect(wrong.code).toBe(1);
    expect(wrong.err).toMatch(/WRONG_MIRROR: /);
    const other = join(work, 'other.pem');
    writeFileSync(other, spkiToPem(await newSigner().publicKeySpki()));
    const unknown = await cli('verify', join(mirror.root, 'manifests/7.json'), '--trusted-keys', other);
    expect(unknown.err).toMatch(/UNKNOWN_KEY: /);
    expect((await cli('verify', '--trusted-keys', pemFile)).code).toBe(2);
    expect((await cli('verify', 'x', '--bogus')).code).toBe(2);
  });
});

describe('wasm-mirror agent --once and wasmplugin', () => {
  it('syncs, then prints WasmPlugins from latest.json and from the agent directory', async () => {
    // Prepare
    const dir = join(work, 'agent');
    // Act / Assess
    const synced = await cli(
      'agent',
      '--mirror-url',
      `${mirror.url}/`,
      '--mirror-name',
      'prod-mesh',
      '--trusted-keys',
      keysJsonFile,
      '--dir',
      dir,
      '--once',
      '--select',
      'ghcr.io/acme/*',
    );
    expect(synced.err).toContain('info manifest accepted version=7');
    expect(synced.code).toBe(0);
    expect(synced.out).toContain('in sync with manifest version 7: 2 downloaded');

    const remote = await cli(
      'wasmplugin',
      'ghcr.io/acme/basic-auth:1.13.0',
      '--mirror-url',
      mirror.url,
      '--trusted-keys',
      pemFile,
      '--mirror-name',
      'prod-mesh',
      '--namespace',
      'mesh',
    );
    expect(remote.code).toBe(0);
    const plugin = parse(remote.out);
    expect(plugin).toMatchObject({
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'WasmPlugin',
      metadata: { name: 'basic-auth', namespace: 'mesh' },
      spec: { url: `${mirror.url}/modules/sha256/${mods[1]!.sha256}.wasm`, sha256: mods[1]!.sha256 },
    });

    const local = await cli(
      'wasmplugin',
      '127.0.0.1:5000/plugins/Rate_Limit',
      '--from-manifest',
      join(dir, 'manifest.json'),
      '--local-dir',
      dir,
      '--selector',
      'istio=ingressgateway',
    );
    expect(local.code).toBe(0);
    const localPlugin = parse(local.out);
    expect(localPlugin.metadata.name).toBe('rate-limit');
    expect(localPlugin.spec.url).toBe(`file://${dir}/modules/sha256/${mods[2]!.sha256}.wasm`);

    const ambiguous = await cli(
      'wasmplugin',
      'ghcr.io/acme/basic-auth',
      '--from-manifest',
      join(dir, 'manifest.json'),
      '--mirror-url',
      mirror.url,
      '--mesh-wide',
    );
    expect(ambiguous.code).toBe(2);
    const missing = await cli(
      'wasmplugin',
      'ghcr.io/acme/nope',
      '--from-manifest',
      join(dir, 'manifest.json'),
      '--mirror-url',
      mirror.url,
      '--mesh-wide',
    );
    expect(missing.err).toMatch(/NOT_FOUND/);
    const envelope = await cli(
      'wasmplugin',
      'ghcr.io/acme/basic-auth:1.12.0',
      '--from-manifest',
      join(mirror.root, 'manifests/7.json'),
      '--mirror-url',
      mirror.url,
      '--mesh-wide',
    );
    expect(envelope.code).toBe(2); // an envelope needs --trusted-keys
    const noKeys = await cli(
      'wasmplugin',
      'ghcr.io/acme/basic-auth:1.12.0',
      '--mirror-url',
      mirror.url,
      '--mesh-wide',
    );
    expect(noKeys.code).toBe(2);
  });

  it('agent --once exits 1 with the code when verification fails', async () => {
    // Prepare
    const other = join(work, 'other2.pem');
    writeFileSync(other, spkiToPem(await newSigner().publicKeySpki()));
    // Act / Assess
    const r = await cli(
      'agent',
      '--mirror-url',
      mirror.url,
      '--mirror-name',
      'prod-mesh',
      '--trusted-keys',
      other,
      '--dir',
      join(work, 'agent2'),
      '--once',
    );
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/wasm-mirror agent: UNKNOWN_KEY: /);
    expect((await cli('agent', '--mirror-url', mirror.url, '--once')).code).toBe(2);
  });

  it('serves metrics when asked', async () => {
    // Prepare
    const { startMetricsServer, PrometheusRegistry, parseListenAddress } = await import(
      '../../shared/agent/index.ts'
    );
    // Act / Assess
    expect(parseListenAddress('9090')).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(parseListenAddress('[::1]:9090')).toEqual({ host: '::1', port: 9090 });
    const reg = new PrometheusRegistry();
    reg.count('istio_agent_wasm_remote_fetch_count', { result: 'success' }, 3);
    const srv = await startMetricsServer('127.0.0.1:0', reg);
    try {
      const text = await (await fetch(srv.url)).text();
      expect(text).toContain('# TYPE istio_agent_wasm_remote_fetch_count counter');
      expect(text).toContain('istio_agent_wasm_remote_fetch_count{result="success"} 3');
    } finally {
      await srv.close();
    }
  });
});
