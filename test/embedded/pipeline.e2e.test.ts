import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedMirror } from '../../shared/embedded/runtime.ts';
import {
  type Harness,
  type PushFormat,
  pushWasm,
  startHarness,
  type TestRegistry,
} from '../support/index.ts';
import { fetchManifest, opensslVerifies, sha256Of, waitForManifest } from '../support/mirror.ts';
import { minimalComponent, proxyWasmModule } from '../support/wasm.ts';

const TOKEN = 'e2e-hook-token-0123456789';

describe('embedded pipeline: registry push → webhook → mirror → signed manifest → served', () => {
  let registry: TestRegistry;
  let mirror: EmbeddedMirror;

  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({
      mirrorName: 'e2e-mesh',
      mirrorSettings: 'manifestTtl: 48h',
      notify: true,
      token: TOKEN,
    });
    ({ registry, mirror } = harness);
  });

  afterAll(() => harness?.stop());

  it('lists a pushed module of every format, signed and byte-exact', async () => {
    // Prepare
    const formats: PushFormat[] = ['wasm-artifact', 'compat-oci', 'compat-docker', 'cncf-wasm', 'index'];
    const pushed = new Map<string, { bytes: Uint8Array; digest: string }>();
    // Act
    for (const format of formats) {
      const bytes = proxyWasmModule({ marker: `e2e ${format}` });
      const { digest } = await pushWasm(registry.host, `plugins/${format}:1.0`, bytes, format);
      pushed.set(`${registry.host}/plugins/${format}`, { bytes, digest });
    }
    const component = minimalComponent();
    const { digest: componentDigest } = await pushWasm(
      registry.host,
      'plugins/component:0.1',
      component,
      'cncf-wasm',
    );
    pushed.set(`${registry.host}/plugins/component`, { bytes: component, digest: componentDigest });
    // Assess
    const manifest = await waitForManifest(mirror.url, (p) => p.modules.length === pushed.size, 60_000);
    expect(manifest.payload.mirror).toBe('e2e-mesh');
    expect(manifest.payload.type).toBe('wasm-mirror.manifest/v1');
    expect(manifest.envelope.payloadType).toBe('application/vnd.wasm-mirror.manifest.v1+json');

    // Signature: openssl over the DSSE PAE with the key from keys.json.
    const keys = (await (await fetch(`${mirror.url}/keys.json`)).json()) as {
      keys: { keyid: string; publicKey: string }[];
    };
    expect(keys.keys).toHaveLength(1);
    expect(manifest.envelope.signatures[0]!.keyid).toBe(keys.keys[0]!.keyid);
    expect(opensslVerifies(manifest.envelope, keys.keys[0]!.publicKey)).toBe(true);

    for (const entry of manifest.payload.modules) {
      const expected = pushed.get(entry.name);
      expect(expected, entry.name).toBeDefined();
      expect(entry.tag).toBe(entry.name.endsWith('component') ? '0.1' : '1.0');
      expect(entry.ociDigest).toBe(expected!.digest);
      expect(entry.sha256).toBe(sha256Of(expected!.bytes));
      expect(entry.size).toBe(expected!.bytes.length);
      const res = await fetch(`${mirror.url}/modules/sha256/${entry.sha256}.wasm`);
      expect(res.status).toBe(200);
      const served = new Uint8Array(await res.arrayBuffer());
      expect(sha256Of(served)).toBe(entry.sha256);
      expect(Buffer.compare(served, expected!.bytes)).toBe(0);
    }
    const byName = Object.fromEntries(manifest.payload.modules.map((m) => [m.name.split('/').pop(), m]));
    expect(byName['wasm-artifact']!.format).toBe('wasm-artifact');
    expect(byName['compat-oci']!.format).toBe('compat-image');
    expect(byName['compat-docker']!.format).toBe('compat-image');
    expect(byName['cncf-wasm']!.format).toBe('cncf-wasm');
    expect(byName['wasm-artifact']!.abi).toBe('proxy_abi_version_0_2_1');
    expect(byName.component!.kind).toBe('component');
    // Sorted by (name, tag), each listed once.
    const names = manifest.payload.modules.map((m) => m.name);
    expect(names).toEqual([...names].sort());
    expect(new Set(names).size).toBe(names.length);
  });

  it('replaces the entry when a tag moves to a new digest and keeps the old bytes', async () => {
    // Prepare
    const first = proxyWasmModule({ marker: 'moving v1' });
    const second = proxyWasmModule({ marker: 'moving v2' });
    await pushWasm(registry.host, 'plugins/moving:stable', first, 'wasm-artifact');
    await waitForManifest(mirror.url, (p) => p.modules.some((m) => m.sha256 === sha256Of(first)));
    // Act
    await pushWasm(registry.host, 'plugins/moving:stable', second, 'wasm-artifact');
    const after = await waitForManifest(mirror.url, (p) =>
      p.modules.some((m) => m.sha256 === sha256Of(second)),
    );
    // Assess
    const entries = after.payload.modules.filter((m) => m.name.endsWith('/plugins/moving'));
    expect(entries).toHaveLength(1);
    expect((await fetch(`${mirror.url}/modules/sha256/${sha256Of(first)}.wasm`)).status).toBe(200);
    // Act
    // Rolled back within seconds: listed again, from the bytes already stored.
    await pushWasm(registry.host, 'plugins/moving:stable', first, 'wasm-artifact');
    const back = await waitForManifest(mirror.url, (p) =>
      p.modules.some((m) => m.name.endsWith('/plugins/moving') && m.sha256 === sha256Of(first)),
    );
    // Assess
    expect(back.payload.modules.filter((m) => m.name.endsWith('/plugins/moving'))).toHaveLength(1);
    const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
    expect(metrics).toMatch(/wasm_mirror_mirror_results_total\{[^}]*reason="reused"[^}]*\} 1\n/);
  });

  it('serves conditional GETs and byte ranges', async () => {
    // Act / Assess
    const latest = await fetch(`${mirror.url}/manifests/latest.json`);
    const etag = latest.headers.get('etag')!;
    await latest.arrayBuffer();
    expect(etag).toMatch(/^"/);
    const again = await fetch(`${mirror.url}/manifests/latest.json`, { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    const manifest = (await fetchManifest(mirror.url))!;
    const module = manifest.payload.modules[0]!;
    const part = await fetch(`${mirror.url}/modules/sha256/${module.sha256}.wasm`, {
      headers: { range: 'bytes=0-3' },
    });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 0-3/${module.size}`);
    expect([...new Uint8Array(await part.arrayBuffer())]).toEqual([0x00, 0x61, 0x73, 0x6d]);
    const versioned = await fetch(`${mirror.url}/manifests/${manifest.payload.version}.json`);
    expect(Buffer.compare(new Uint8Array(await versioned.arrayBuffer()), manifest.bytes)).toBe(0);
    // Nothing outside the public layout is reachable.
    for (const path of [
      '/private/signing-key.pem',
      '/queues/mirror',
      '/modules/sha256/../../private/signing-key.pem',
      '/state/',
    ]) {
      const res = await fetch(`${mirror.url}${path}`);
      await res.arrayBuffer();
      expect(res.status, path).toBe(404);
    }
  });

  it('reports status and metrics', async () => {
    // Act
    const status = (await (await fetch(`${mirror.url}/status`)).json()) as {
      mirror: string;
      manifest: { version: number };
      modules: unknown[];
    };
    // Assess
    expect(status.mirror).toBe('e2e-mesh');
    expect(status.modules.length).toBeGreaterThanOrEqual(7);
    const metrics = await (await fetch(`${mirror.url}/metrics`)).text();
    expect(metrics).toMatch(/wasm_mirror_webhooks_total\{[^}]*source="local"[^}]*\} \d+/);
    expect(metrics).toMatch(/wasm_mirror_manifest_version \d+/);
    expect(metrics).toMatch(/wasm_mirror_manifest_expiry_seconds \d+/);
    expect(metrics).toMatch(/wasm_mirror_mirror_results_total\{[^}]*reason="mirrored"/);
  });
});
