/**
 * The puller keeping what it verified: every blob of the image is downloaded once (the layer it
 * reads for the module is written aside while it streams), staged files hold exactly the
 * registry's bytes, and nothing unverified or cut short is left behind.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { PulledModule, RegistryTarget } from '../../shared/core/ports.ts';
import { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import { type FakeRegistry, MEDIA, makeTar, proxyWasmModule, startFakeRegistry } from '../support/index.ts';
import { sha256Hex } from './support.ts';

const MODULE = proxyWasmModule({ marker: 'intake' });
const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));

describe('puller: keeping the verified content', () => {
  let fake: FakeRegistry;
  let dir: string;
  const target = (repository: string, reference = 'v1'): RegistryTarget => ({
    registry: fake.host,
    repository,
    reference,
    insecure: true,
  });
  const stagePath = (digest: string) => join(dir, `stage-${digest.slice(7)}`);
  const pull = (repository: string, puller = new OciWasmPuller({ retry: { maxAttempts: 1 } })) =>
    puller.pullToFile(target(repository), join(dir, 'module.wasm'), { keepContent: { stagePath } });
  const blobGets = () => fake.requests.filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  const staged = () => readdirSync(dir).filter((f) => f.startsWith('stage-'));

  beforeEach(async () => {
    fake = await startFakeRegistry();
    dir = mkdtempSync(join(tmpdir(), 'wm-intake-'));
  });
  afterEach(async () => {
    await fake.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('returns a Wasm artifact: its manifest, its config once, its module layer as the module file itself', async () => {
    // Prepare
    const config = json({ type: 'envoy_proxy' });
    const { digest, manifest } = fake.putImage('plugins/a', 'v1', {
      config: { mediaType: MEDIA.wasmArtifactConfig, bytes: config },
      layers: [
        { mediaType: MEDIA.wasmArtifactConfig, bytes: config },
        { mediaType: MEDIA.wasmArtifactLayer, bytes: MODULE },
      ],
    });
    // Act
    const pulled = await pull('plugins/a');
    // Assess
    expect(pulled.content?.map(({ body: _b, ...c }) => c)).toEqual([
      { digest, mediaType: MEDIA.ociManifest, size: manifest.length, manifest: true },
      {
        digest: `sha256:${sha256Hex(config)}`,
        mediaType: MEDIA.wasmArtifactConfig,
        size: config.length,
        manifest: false,
      },
      {
        digest: `sha256:${sha256Hex(MODULE)}`,
        mediaType: MEDIA.wasmArtifactLayer,
        size: MODULE.length,
        manifest: false,
      },
    ]);
    expect(pulled.content?.[0]?.body).toEqual(manifest);
    expect(readFileSync(stagePath(`sha256:${sha256Hex(MODULE)}`))).toEqual(Buffer.from(MODULE));
    // Linked, not copied: the module file and its layer are one inode.
    expect(statSync(stagePath(`sha256:${sha256Hex(MODULE)}`)).ino).toBe(
      statSync(join(dir, 'module.wasm')).ino,
    );
    expect(
      blobGets()
        .map((r) => r.path.split('/').pop())
        .sort(),
    ).toEqual([`sha256:${sha256Hex(config)}`, `sha256:${sha256Hex(MODULE)}`].sort());
  });

  it('returns an index with the child it resolved, and downloads every blob exactly once', async () => {
    // Prepare
    const tar = makeTar([{ name: 'plugin.wasm', content: MODULE }]);
    const layer = new Uint8Array(gzipSync(tar));
    const base = new Uint8Array(gzipSync(makeTar([{ name: 'etc/hostname', content: json('x') }])));
    const config = json({ architecture: 'amd64', os: 'linux' });
    const child = fake.putImage('plugins/i', 'child', {
      config: { mediaType: MEDIA.ociConfig, bytes: config },
      layers: [
        { mediaType: MEDIA.ociLayerGzip, bytes: base },
        { mediaType: MEDIA.ociLayerGzip, bytes: layer },
      ],
    });
    const other = fake.putImage('plugins/i', 'arm', {
      config: { mediaType: MEDIA.ociConfig, bytes: json({ os: 'linux', architecture: 'arm64' }) },
      layers: [{ mediaType: MEDIA.ociLayerGzip, bytes: layer }],
    });
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [
        {
          mediaType: MEDIA.ociManifest,
          digest: other.digest,
          size: other.manifest.length,
          platform: { os: 'linux', architecture: 'arm64' },
        },
        {
          mediaType: MEDIA.ociManifest,
          digest: child.digest,
          size: child.manifest.length,
          platform: { os: 'linux', architecture: 'amd64' },
        },
      ],
    });
    const top = fake.putManifest('plugins/i', ['v1'], index, MEDIA.ociIndex);
    // Act
    const pulled = await pull('plugins/i');
    // Assess
    expect(pulled.format).toBe('compat-image');
    expect(pulled.content?.map((c) => [c.digest, c.manifest])).toEqual([
      [top, true],
      [child.digest, true],
      [`sha256:${sha256Hex(config)}`, false],
      [`sha256:${sha256Hex(base)}`, false],
      [`sha256:${sha256Hex(layer)}`, false],
    ]);
    for (const c of pulled.content!.filter((x) => !x.manifest)) {
      const body = c.body as { path: string; size: number };
      expect(sha256Hex(readFileSync(body.path)), c.digest).toBe(c.digest.slice(7));
      expect(body.size).toBe(c.size);
    }
    const gets = blobGets().map((r) => r.path.split('/').pop());
    expect(gets.length).toBe(new Set(gets).size);
    expect(gets.sort()).toEqual(
      [`sha256:${sha256Hex(base)}`, `sha256:${sha256Hex(config)}`, `sha256:${sha256Hex(layer)}`].sort(),
    );
  });

  it('keeps nothing when asked for nothing', async () => {
    // Prepare
    fake.putImage('plugins/a', 'v1', {
      config: { mediaType: MEDIA.wasmArtifactConfig, bytes: json({}) },
      layers: [
        { mediaType: MEDIA.wasmArtifactConfig, bytes: json({}) },
        { mediaType: MEDIA.wasmArtifactLayer, bytes: MODULE },
      ],
    });
    // Act
    const pulled: PulledModule = await new OciWasmPuller().pullToFile(
      target('plugins/a'),
      join(dir, 'm.wasm'),
    );
    // Assess
    expect(pulled.content).toBeUndefined();
    expect(blobGets()).toHaveLength(1);
  });

  it('leaves no staged file when a blob is not what its digest says', async () => {
    // Prepare
    const config = json({ architecture: 'amd64', os: 'linux' });
    const layer = new Uint8Array(gzipSync(makeTar([{ name: 'plugin.wasm', content: MODULE }])));
    const configDigest = `sha256:${sha256Hex(config)}`;
    fake.putImage('plugins/c', 'v1', {
      config: { mediaType: MEDIA.ociConfig, bytes: config },
      layers: [{ mediaType: MEDIA.ociLayerGzip, bytes: layer }],
    });
    // The config arrives with one byte changed.
    fake.script((req, res) => {
      if (!req.url?.endsWith(configDigest)) return false;
      const bad = Buffer.from(config);
      bad[0] = bad[0]! ^ 1;
      res.writeHead(200, { 'content-length': String(bad.length) }).end(bad);
      return true;
    });
    // Act / Assess
    await expect(pull('plugins/c')).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(staged()).toEqual([]);
    // The module was fine, but it is not handed over without the content asked for.
    expect(existsSync(join(dir, 'module.wasm'))).toBe(false);
  });

  it('leaves no staged file when the module is refused', async () => {
    // Prepare
    const notWasm = new Uint8Array(gzipSync(makeTar([{ name: 'plugin.wasm', content: json('nope') }])));
    fake.putImage('plugins/n', 'v1', {
      config: { mediaType: MEDIA.ociConfig, bytes: json({}) },
      layers: [{ mediaType: MEDIA.ociLayerGzip, bytes: notWasm }],
    });
    // Act / Assess
    await expect(pull('plugins/n')).rejects.toMatchObject({ code: 'NOT_WASM' });
    expect(staged()).toEqual([]);
    expect(existsSync(join(dir, 'module.wasm'))).toBe(false);
  });

  it('refuses an image whose other layers are larger than the layer cap, before downloading them', async () => {
    // Prepare
    const layer = new Uint8Array(gzipSync(makeTar([{ name: 'plugin.wasm', content: MODULE }])));
    const big = new Uint8Array(64 * 1024).fill(7);
    fake.putImage('plugins/big', 'v1', {
      config: { mediaType: MEDIA.ociConfig, bytes: json({}) },
      layers: [
        { mediaType: MEDIA.ociLayerGzip, bytes: big },
        { mediaType: MEDIA.ociLayerGzip, bytes: layer },
      ],
    });
    const puller = new OciWasmPuller({ retry: { maxAttempts: 1 }, maxLayerBytes: 32 * 1024 });
    // Act / Assess
    await expect(pull('plugins/big', puller)).rejects.toMatchObject({ code: 'SIZE_EXCEEDED' });
    expect(blobGets().some((r) => r.path.endsWith(sha256Hex(big)))).toBe(false);
    expect(staged()).toEqual([]);
    expect(existsSync(join(dir, 'module.wasm'))).toBe(false);
  });
});
