/**
 * Hostile and broken content served by a scripted registry: archives that try to escape, gzip
 * bombs, images without Wasm, bytes that are not (valid) Wasm. Each case has its own error code
 * and leaves no file behind.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createGzip, gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';
import { OciWasmPuller, type OciWasmPullerOptions } from '../../shared/core/wasm/puller.ts';
import {
  type BlobSpec,
  concat,
  type FakeRegistry,
  leb128,
  MEDIA,
  makeTar,
  makeTarGz,
  minimalComponent,
  proxyWasmModule,
  startFakeRegistry,
  type TarEntry,
} from '../support/index.ts';

const module = proxyWasmModule({ marker: 'hostile' });
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const ociConfig: BlobSpec = {
  mediaType: MEDIA.ociConfig,
  bytes: json({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
};

let fake: FakeRegistry;
let dir: string;

beforeEach(async () => {
  fake = await startFakeRegistry();
  dir = mkdtempSync(join(tmpdir(), 'wm-hostile-'));
});
afterEach(async () => {
  await fake.stop();
  rmSync(dir, { recursive: true, force: true });
});

function pull(options: OciWasmPullerOptions = {}) {
  return new OciWasmPuller({ retry: { maxAttempts: 1 }, ...options }).pullToFile(
    { registry: fake.host, repository: 'plugins/x', reference: 'v1', insecure: true },
    join(dir, 'out.wasm'),
  );
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WasmMirrorError);
  expect((err as WasmMirrorError).code).toBe(code);
  expect(readdirSync(dir)).toEqual([]);
}

function putCompat(layer: Uint8Array, mediaType: string = MEDIA.ociLayerGzip) {
  return fake.putImage('plugins/x', 'v1', { config: ociConfig, layers: [{ mediaType, bytes: layer }] });
}

function putArtifact(bytes: Uint8Array) {
  return fake.putImage('plugins/x', 'v1', {
    config: { mediaType: MEDIA.wasmArtifactConfig, bytes: json({}) },
    layers: [{ mediaType: MEDIA.wasmArtifactLayer, bytes }],
  });
}

function putCompatWithDigest(layer: Uint8Array) {
  const image = putCompat(layer);
  const manifest = JSON.parse(new TextDecoder().decode(image.manifest)) as { layers: { digest: string }[] };
  return { layerDigest: manifest.layers[0]!.digest };
}

/** Serves `bytes` for the blob `digest` with the byte at `at` flipped (same length, wrong digest). */
function serveCorrupted(digest: string, bytes: Uint8Array, at: number): void {
  const corrupted = Buffer.from(bytes);
  corrupted[at] = (corrupted[at] ?? 0) ^ 0xff;
  fake.script((req, res) => {
    if (req.url !== `/v2/plugins/x/blobs/${digest}`) return false;
    res.writeHead(200, { 'content-length': String(corrupted.length) }).end(corrupted);
    return true;
  });
}

/** A tar+gzip layer with 256 MiB of zeros (about 256 KiB compressed) between two groups of entries. */
async function gzipBomb(entries: { before: TarEntry[]; after: TarEntry[] }): Promise<Uint8Array> {
  const filler = 256 * 1024 * 1024;
  const header = makeTar([{ name: 'filler', size: filler }], { end: false }).subarray(0, 512);
  const gz = createGzip({ level: 9 });
  const parts: Buffer[] = [];
  gz.on('data', (c: Buffer) => parts.push(c));
  const done = new Promise((resolve) => gz.on('end', resolve));
  gz.write(makeTar(entries.before, { end: false }));
  gz.write(header);
  const zeros = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < filler / zeros.length; i++) {
    if (!gz.write(zeros)) await new Promise((r) => gz.once('drain', r));
  }
  gz.end(makeTar(entries.after));
  await done;
  return Buffer.concat(parts);
}

describe('compat image archives', () => {
  it('reads plugin.wasm by base name from the last layer, through pax long names', async () => {
    const deep = `${'very-long-directory-name/'.repeat(6)}plugin.wasm`;
    fake.putImage('plugins/x', 'v1', {
      config: ociConfig,
      layers: [
        {
          mediaType: MEDIA.ociLayerGzip,
          bytes: makeTarGz([{ name: 'plugin.wasm', content: 'not this one' }]),
        },
        {
          mediaType: MEDIA.ociLayerGzip,
          bytes: makeTarGz([
            { name: 'etc/', type: 'dir' },
            { name: 'etc/readme', content: 'hello' },
            { name: deep, content: module },
          ]),
        },
      ],
    });
    const pulled = await pull();
    expect(pulled.format).toBe('compat-image');
    expect(new Uint8Array(readFileSync(join(dir, 'out.wasm')))).toEqual(module);
  });

  it('refuses an uncompressed tar layer, as Istio does (UNSUPPORTED_FORMAT)', async () => {
    putCompat(makeTar([{ name: './plugin.wasm', content: module }]), MEDIA.ociLayer);
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it.each<[string, TarEntry[]]>([
    ['../plugin.wasm', [{ name: '../plugin.wasm', content: module }]],
    ['a/../../plugin.wasm', [{ name: 'a/../../plugin.wasm', content: module }]],
    ['/plugin.wasm (absolute)', [{ name: '/plugin.wasm', content: module }]],
    ['a symlink plugin.wasm', [{ name: 'plugin.wasm', type: 'symlink', linkname: '/etc/passwd' }]],
    [
      'a hard link plugin.wasm',
      [
        { name: 'real.wasm', content: module },
        { name: 'plugin.wasm', type: 'hardlink', linkname: 'real.wasm' },
      ],
    ],
    [
      'a sparse file before plugin.wasm',
      [
        { name: 'holes', typeflag: 'S' },
        { name: 'plugin.wasm', content: module },
      ],
    ],
    [
      'a pax-described sparse file',
      [{ name: 'holes', content: 'x', pax: { 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0' } }],
    ],
  ])('refuses %s (UNSAFE_ARCHIVE)', async (_name, entries) => {
    putCompat(makeTarGz(entries));
    await expectCode(pull(), 'UNSAFE_ARCHIVE');
  });

  it('refuses a truncated tar (UNSUPPORTED_FORMAT)', async () => {
    const tar = makeTar([{ name: 'plugin.wasm', content: module }]);
    putCompat(new Uint8Array(gzipSync(tar.subarray(0, 700))));
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it('refuses an image with no Wasm in it (UNSUPPORTED_FORMAT)', async () => {
    putCompat(makeTarGz([{ name: 'bin/sh', content: '#!/bin/sh' }]));
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it('refuses a last layer that is not tar+gzip (UNSUPPORTED_FORMAT)', async () => {
    putCompat(new Uint8Array([1, 2, 3]), 'application/vnd.oci.image.layer.v1.tar+zstd');
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it('refuses an image without layers (UNSUPPORTED_FORMAT)', async () => {
    fake.putImage('plugins/x', 'v1', { config: ociConfig, layers: [] });
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it('refuses a tar+gzip layer that is not gzip (UNSUPPORTED_FORMAT)', async () => {
    putCompat(makeTar([{ name: 'plugin.wasm', content: module }]));
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it('stops a gzip bomb (DECOMPRESSION_BOMB)', async () => {
    // 256 MiB of zeros before plugin.wasm, about 256 KiB compressed.
    putCompat(await gzipBomb({ before: [], after: [{ name: 'plugin.wasm', content: module }] }));
    await expectCode(pull({ maxModuleBytes: 8 * 1024 * 1024 }), 'DECOMPRESSION_BOMB');
  });

  it('decompresses nothing after plugin.wasm, so a bomb behind it costs only its download', async () => {
    // Prepare
    putCompat(await gzipBomb({ before: [{ name: 'plugin.wasm', content: module }], after: [] }));
    const started = Date.now();

    // Act
    const pulled = await pull({ maxModuleBytes: 8 * 1024 * 1024 });

    // Assess
    expect(pulled).toMatchObject({ format: 'compat-image', size: module.length });
    expect(new Uint8Array(readFileSync(join(dir, 'out.wasm')))).toEqual(module);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('still checks the digest of the layer bytes after plugin.wasm (DIGEST_MISMATCH)', async () => {
    // Prepare
    const gz = makeTarGz([
      { name: 'plugin.wasm', content: module },
      { name: 'tail', content: 'x'.repeat(3000) },
    ]);
    const { layerDigest } = putCompatWithDigest(gz);
    serveCorrupted(layerDigest, gz, gz.length - 12);

    // Act
    const result = pull();

    // Assess
    await expectCode(result, 'DIGEST_MISMATCH');
  });

  it('does not fall back to the Wasm layer when the compat layer was corrupted in transit (DIGEST_MISMATCH)', async () => {
    // Prepare: Istio would read the Wasm layer only if the compat layer held no plugin.wasm.
    const gz = makeTarGz([{ name: 'plugin.wasm', content: module }]);
    const image = fake.putImage('plugins/x', 'v1', {
      config: ociConfig,
      layers: [
        { mediaType: MEDIA.wasmArtifactLayer, bytes: proxyWasmModule({ marker: 'other' }) },
        { mediaType: MEDIA.ociLayerGzip, bytes: gz },
      ],
    });
    const layerDigest = (
      JSON.parse(new TextDecoder().decode(image.manifest)) as { layers: { digest: string }[] }
    ).layers[1]!.digest;
    serveCorrupted(layerDigest, gz, 0);

    // Act
    const result = pull();

    // Assess
    await expectCode(result, 'DIGEST_MISMATCH');
  });

  it('refuses corrupt deflate data rather than guess what Istio read (UNSUPPORTED_FORMAT)', async () => {
    // Prepare: a stored block whose length check fails, ahead of a Wasm layer Istio might fall back to.
    const corrupt = Buffer.concat([
      Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]),
      Buffer.from([0x01, 0x10, 0x00, 0x10, 0x00]),
      Buffer.alloc(24),
    ]);
    fake.putImage('plugins/x', 'v1', {
      config: ociConfig,
      layers: [
        { mediaType: MEDIA.wasmArtifactLayer, bytes: proxyWasmModule({ marker: 'other' }) },
        { mediaType: MEDIA.ociLayerGzip, bytes: corrupt },
      ],
    });

    // Act
    const result = pull().catch((err: unknown) => err);

    // Assess
    await expectCode(
      result.then((err) => Promise.reject(err)),
      'UNSUPPORTED_FORMAT',
    );
    expect(((await result) as Error).message).toMatch(/gzip data is corrupt/);
  });

  it('refuses a plugin.wasm declared over the module cap (SIZE_EXCEEDED)', async () => {
    // A header that claims 10 GiB (base-256 size field) with nothing behind it.
    const tar = Buffer.from(makeTar([{ name: 'plugin.wasm', size: 0 }]));
    tar[124] = 0x80;
    tar.fill(0, 125, 136);
    tar.writeUIntBE(10 * 1024 ** 3, 130, 6);
    let sum = 0;
    tar.fill(0x20, 148, 156);
    for (let i = 0; i < 512; i++) sum += tar[i] ?? 0;
    tar.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
    putCompat(new Uint8Array(gzipSync(tar)));
    await expectCode(pull(), 'SIZE_EXCEEDED');
  });
});

describe('module validation', () => {
  it('refuses bytes that are not Wasm (NOT_WASM)', async () => {
    putArtifact(new TextEncoder().encode('\x7fELF\x02\x01\x01\0 not a wasm module'));
    await expectCode(pull(), 'NOT_WASM');
  });

  it('refuses an empty module (NOT_WASM)', async () => {
    putArtifact(new Uint8Array(0));
    await expectCode(pull(), 'NOT_WASM');
  });

  it('refuses a module that does not validate (INVALID_WASM)', async () => {
    // Type () -> i32, one function whose body returns nothing: structurally fine, invalid.
    const bad = concat([
      Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
      Uint8Array.of(0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7f),
      Uint8Array.of(0x03, 0x02, 0x01, 0x00),
      Uint8Array.of(0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b),
    ]);
    putArtifact(bad);
    await expectCode(pull(), 'INVALID_WASM');
  });

  it('refuses a truncated module (INVALID_WASM)', async () => {
    putArtifact(module.subarray(0, module.length - 3));
    await expectCode(pull(), 'INVALID_WASM');
  });

  it('refuses an unknown Wasm version (INVALID_WASM)', async () => {
    putArtifact(Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x02, 0x00, 0x00, 0x00));
    await expectCode(pull(), 'INVALID_WASM');
  });

  it('refuses a component whose nested core module is not Wasm (INVALID_WASM)', async () => {
    const inner = new TextEncoder().encode('garbage!');
    putArtifact(
      concat([minimalComponent().subarray(0, 8), Uint8Array.of(0x01), leb128(inner.length), inner]),
    );
    await expectCode(pull(), 'INVALID_WASM');
  });

  it('refuses a plugin.wasm over the module cap inside a layer (SIZE_EXCEEDED)', async () => {
    putCompat(makeTarGz([{ name: 'plugin.wasm', content: module }]));
    await expectCode(pull({ maxModuleBytes: 100, maxLayerBytes: 1 << 20 }), 'SIZE_EXCEEDED');
  });
});

describe('indexes', () => {
  it('resolves an index to the entry Istio loads, and reports the index digest', async () => {
    // Prepare
    const image = fake.putImage('plugins/x', 'image', {
      config: ociConfig,
      layers: [
        { mediaType: MEDIA.ociLayerGzip, bytes: makeTarGz([{ name: 'plugin.wasm', content: module }]) },
      ],
    });
    const artifact = putArtifact(proxyWasmModule({ marker: 'not the linux/amd64 entry' }));
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [
        {
          mediaType: MEDIA.ociManifest,
          digest: artifact.digest,
          size: artifact.manifest.length,
          platform: { os: 'wasip1', architecture: 'wasm' },
        },
        {
          mediaType: MEDIA.ociManifest,
          digest: image.digest,
          size: image.manifest.length,
          platform: { os: 'linux', architecture: 'amd64' },
        },
      ],
    });
    const indexDigest = fake.putManifest('plugins/x', ['v1'], index, MEDIA.ociIndex);

    // Act
    const pulled = await pull();

    // Assess
    expect(pulled).toMatchObject({ format: 'compat-image', ociDigest: indexDigest, size: module.length });
    expect(new Uint8Array(readFileSync(join(dir, 'out.wasm')))).toEqual(module);
  });

  it('refuses an index without a Wasm entry (UNSUPPORTED_FORMAT)', async () => {
    const other = fake.putImage('plugins/x', 'other', {
      config: ociConfig,
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', bytes: new Uint8Array([1]) }],
    });
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [{ mediaType: MEDIA.ociManifest, digest: other.digest, size: other.manifest.length }],
    });
    fake.putManifest('plugins/x', ['v1'], index, MEDIA.ociIndex);
    await expectCode(pull(), 'UNSUPPORTED_FORMAT');
  });

  it('refuses an index entry whose size lies (LENGTH_MISMATCH)', async () => {
    const artifact = putArtifact(module);
    const index = json({
      schemaVersion: 2,
      mediaType: MEDIA.ociIndex,
      manifests: [{ mediaType: MEDIA.ociManifest, digest: artifact.digest, size: 3 }],
    });
    fake.putManifest('plugins/x', ['v1'], index, MEDIA.ociIndex);
    await expectCode(pull(), 'LENGTH_MISMATCH');
  });

  it('never builds a staging path from a digest that is not sha256 (REGISTRY_PROTOCOL)', async () => {
    // Prepare: a manifest whose config digest tries to leave the staging directory.
    const layer = fake.putBlob(module);
    const manifest = json({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.wasmArtifactConfig, digest: 'sha256:/../../escape', size: 2 },
      layers: [{ mediaType: MEDIA.wasmArtifactLayer, digest: layer, size: module.length }],
    });
    fake.putManifest('plugins/x', ['v1'], manifest, MEDIA.ociManifest);
    const staged: string[] = [];
    const keeping = new OciWasmPuller({ retry: { maxAttempts: 1 } }).pullToFile(
      { registry: fake.host, repository: 'plugins/x', reference: 'v1', insecure: true },
      join(dir, 'out.wasm'),
      {
        keepContent: {
          stagePath: (digest) => {
            staged.push(digest);
            return join(dir, `kept.${digest.slice(7)}`);
          },
        },
      },
    );
    // Act / Assess
    await expectCode(keeping, 'REGISTRY_PROTOCOL');
    expect(staged.every((d) => /^sha256:[0-9a-f]{64}$/.test(d))).toBe(true);
  });
});
