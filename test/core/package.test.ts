/**
 * Packaging a module for push: the exact layout of each format, reproducible bytes (the same
 * module always gives the same digest), and the checks a module file must pass first.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';
import {
  type CheckedModule,
  deterministicGzip,
  deterministicTar,
  type PackagedModule,
  packageModule,
  readModuleFile,
} from '../../shared/core/wasm/package.ts';
import { MEDIA, minimalComponent, proxyWasmModule } from '../support/index.ts';

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let dir: string;
let module: CheckedModule;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'wm-package-'));
  writeFileSync(join(dir, 'filter.wasm'), proxyWasmModule({ marker: 'package' }));
  module = await readModuleFile(join(dir, 'filter.wasm'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function manifestOf(p: PackagedModule) {
  return JSON.parse(Buffer.from(p.manifest.bytes).toString('utf8')) as {
    schemaVersion: number;
    mediaType: string;
    config: { mediaType: string; digest: string; size: number };
    layers: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[];
    annotations?: Record<string, string>;
  };
}

function blobOf(p: PackagedModule, digest: string): Uint8Array {
  const blob = p.blobs.find((b) => b.descriptor.digest === digest);
  if (blob === undefined) throw new Error(`no blob ${digest}`);
  return blob.bytes;
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<WasmMirrorError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WasmMirrorError);
  expect((err as WasmMirrorError).code).toBe(code);
  return err as WasmMirrorError;
}

describe('compat image', () => {
  it('is an OCI image whose one tar+gzip layer holds plugin.wasm', () => {
    // Act
    const p = packageModule(module, 'compat');

    // Assess
    const m = manifestOf(p);
    expect(m).toMatchObject({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig },
      annotations: { 'module.wasm.image/variant': 'compat' },
    });
    expect(m.layers.map((l) => l.mediaType)).toEqual([MEDIA.ociLayerGzip]);
    const tar = gunzipSync(blobOf(p, m.layers[0]!.digest));
    const config = JSON.parse(Buffer.from(blobOf(p, m.config.digest)).toString('utf8'));
    expect(config).toEqual({
      architecture: 'wasm',
      os: 'wasip1',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
    });
    expect(p.manifest.digest).toBe(sha256(p.manifest.bytes));
  });

  it('writes a tar that GNU tar lists with fixed owner, mode and time, and the module as content', () => {
    // Prepare
    const p = packageModule(module, 'compat');
    const layer = blobOf(p, manifestOf(p).layers[0]!.digest);
    const file = join(dir, 'layer.tar.gz');
    writeFileSync(file, layer);

    // Act
    const listing = execFileSync('tar', ['--numeric-owner', '--utc', '-tvzf', file], { encoding: 'utf8' });
    const content = execFileSync('tar', ['-xzOf', file, 'plugin.wasm']);

    // Assess
    expect(listing.trim()).toMatch(
      new RegExp(`^-rw-r--r-- 0/0 +${module.bytes.length} 1970-01-01 00:00 plugin\\.wasm$`),
    );
    expect(sha256(content)).toBe(`sha256:${module.sha256}`);
  });

  it('gzips without a timestamp or build platform in the header', () => {
    // Act
    const gz = deterministicGzip(deterministicTar('plugin.wasm', module.bytes));

    // Assess
    expect([...gz.subarray(0, 4)]).toEqual([0x1f, 0x8b, 8, 0]);
    expect([...gz.subarray(4, 8)]).toEqual([0, 0, 0, 0]);
    expect(gz[9]).toBe(0xff);
    expect(
      Buffer.from(gunzipSync(gz)).equals(Buffer.from(deterministicTar('plugin.wasm', module.bytes))),
    ).toBe(true);
  });
});

describe('Wasm artifact', () => {
  it("has Istio's two layers: the runtime config, then the raw module", () => {
    // Act
    const p = packageModule(module, 'wasm-artifact');

    // Assess
    const m = manifestOf(p);
    expect(m.config.mediaType).toBe(MEDIA.wasmArtifactConfig);
    expect(m.layers.map((l) => [l.mediaType, l.annotations?.['org.opencontainers.image.title']])).toEqual([
      [MEDIA.wasmArtifactConfig, 'runtime-config.json'],
      [MEDIA.wasmArtifactLayer, 'plugin.wasm'],
    ]);
    expect(m.layers[0]!.digest).toBe(m.config.digest);
    expect(m.layers[1]!.digest).toBe(`sha256:${module.sha256}`);
    expect(JSON.parse(Buffer.from(blobOf(p, m.config.digest)).toString('utf8'))).toEqual({
      type: 'envoy_proxy',
      abiVersions: ['v0.2.1'],
    });
    expect(m.annotations).toEqual({
      'module.wasm.runtime/type': 'envoy_proxy',
      'module.wasm.runtime/abi_version': 'v0.2.1',
    });
    // The config is one blob though the manifest names it twice.
    expect(p.blobs).toHaveLength(2);
  });
});

describe('CNCF Wasm artifact', () => {
  it('has one application/wasm layer and a config listing it', () => {
    // Act
    const p = packageModule(module, 'cncf-wasm');

    // Assess
    const m = manifestOf(p);
    expect(m.config.mediaType).toBe(MEDIA.cncfWasmConfig);
    expect(m.layers).toEqual([
      { mediaType: MEDIA.cncfWasmLayer, digest: `sha256:${module.sha256}`, size: module.bytes.length },
    ]);
    expect(JSON.parse(Buffer.from(blobOf(p, m.config.digest)).toString('utf8'))).toEqual({
      created: '1970-01-01T00:00:00Z',
      architecture: 'wasm',
      os: 'wasip1',
      layerDigests: [`sha256:${module.sha256}`],
    });
  });

  it('marks a component as wasip2', async () => {
    // Prepare
    writeFileSync(join(dir, 'component.wasm'), minimalComponent());
    const component = await readModuleFile(join(dir, 'component.wasm'));

    // Act
    const p = packageModule(component, 'cncf-wasm');

    // Assess
    expect(component.kind).toBe('component');
    const config = JSON.parse(Buffer.from(blobOf(p, manifestOf(p).config.digest)).toString('utf8'));
    expect(config.os).toBe('wasip2');
  });
});

describe('reproducible', () => {
  it('gives the same bytes for the same module, and another digest for another module', async () => {
    // Prepare
    writeFileSync(join(dir, 'other.wasm'), proxyWasmModule({ marker: 'package other' }));
    const again = await readModuleFile(join(dir, 'filter.wasm'));
    const other = await readModuleFile(join(dir, 'other.wasm'));

    for (const format of ['compat', 'wasm-artifact', 'cncf-wasm'] as const) {
      // Act
      const first = packageModule(module, format);
      const second = packageModule(again, format);
      const different = packageModule(other, format);

      // Assess
      expect(second.manifest.digest).toBe(first.manifest.digest);
      expect(second.blobs.map((b) => sha256(b.bytes))).toEqual(first.blobs.map((b) => sha256(b.bytes)));
      expect(different.manifest.digest).not.toBe(first.manifest.digest);
    }
  });
});

describe('module file checks', () => {
  it('refuses a file that does not start with \\0asm', async () => {
    // Prepare
    writeFileSync(join(dir, 'text.wasm'), 'hello, not wasm');

    // Act
    const err = await expectCode(readModuleFile(join(dir, 'text.wasm')), 'NOT_WASM');

    // Assess
    expect(err.message).toContain('text.wasm');
  });

  it('refuses a module the engine does not validate', async () => {
    // Prepare: a type section declaring one type and holding none.
    writeFileSync(join(dir, 'bad.wasm'), Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 1, 1));

    // Act, Assess
    await expectCode(readModuleFile(join(dir, 'bad.wasm')), 'INVALID_WASM');
  });

  it('refuses a module over the cap before reading it', async () => {
    // Act, Assess
    await expectCode(readModuleFile(join(dir, 'filter.wasm'), 16), 'SIZE_EXCEEDED');
  });

  it('names a missing file as a usage error', async () => {
    // Act
    const err = await expectCode(readModuleFile(join(dir, 'missing.wasm')), 'USAGE');

    // Assess
    expect(err.message).toContain('missing.wasm');
  });
});
