/**
 * Istio parity: for every case that Istio's own fetcher (istio/istio pkg/wasm/imagefetcher.go) and
 * its tests define, the mirror's puller extracts the bytes Istio would load, or refuses where
 * Istio refuses, so a tag means the same module through the mirror as through `oci://`.
 *
 * Rows are named after the Istio test case they mirror (`TestImageFetcher_Fetch/docker image`),
 * or, for behaviour that only Istio's code and its libraries show, after the function and the
 * case (`extractWasmPluginBinary: …`, `archive/tar: …`, `compress/gzip: …`, `remote.Image: …`).
 * Istio's tests use strings such as "this is wasm plugin" as module bytes; here they are real
 * modules, since the mirror, like Istio's cache, only keeps bytes that are Wasm.
 *
 * Where the mirror knowingly differs, the row says why: its extensions (loaded, and recorded in
 * `format` as formats Istio does not load) and its safety rules (refused).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WasmFormat } from '../../shared/core/domain.ts';
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';
import { buildPayload } from '../../shared/core/manifest/payload.ts';
import { moduleRecordSchema } from '../../shared/core/schemas.ts';
import { istioLoadsFormat } from '../../shared/core/wasm/formats.ts';
import { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import {
  type Descriptor,
  type FakeRegistry,
  gzipMember,
  MEDIA,
  makeTar,
  makeTarGz,
  type Platform,
  paxRecords,
  proxyWasmModule,
  pushLayout,
  pushWasm,
  startFakeRegistry,
  startRegistry,
  type TarEntry,
  type TestRegistry,
} from '../support/index.ts';

const A = proxyWasmModule({ marker: 'istio parity module A' });
const B = proxyWasmModule({ marker: 'istio parity module B' });
const NOT_WASM = new TextEncoder().encode('invalid binary');

/** Where a row lays its artifact out: the scripted registry or an OCI layout for skopeo. */
interface Store {
  blob(mediaType: string, bytes: Uint8Array, annotations?: Record<string, string>): Descriptor;
  json(mediaType: string, value: unknown): Descriptor;
}

type Outcome = { bytes: Uint8Array; format: WasmFormat } | { refuses: ErrorCode };

interface Row {
  name: string;
  /** What Istio's fetcher does with the artifact. */
  istio: 'loads' | 'refuses';
  /** What the mirror does: the bytes and format it records, or the error it refuses with. */
  mirror: Outcome;
  /** Why the mirror differs from Istio on this row. */
  difference?: string;
  /** Lays the artifact out; returns the manifest or index a tag points to. */
  build(s: Store): Descriptor;
  /** Pull by digest instead of by tag. */
  byDigest?: boolean;
  /** Also pushed with skopeo to the real registry and pulled from there. */
  real?: boolean;
}

const bytes = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const ociConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } };
const runtimeConfig = { type: 'envoy_proxy', abiVersions: ['v0-097b7f2e4cc1fb490cc1943d0d633655ac3c522f'] };

function image(
  s: Store,
  layers: Descriptor[],
  opts: { docker?: boolean; config?: Descriptor } = {},
): Descriptor {
  const mediaType = opts.docker === true ? MEDIA.dockerManifest : MEDIA.ociManifest;
  const config =
    opts.config ?? s.json(opts.docker === true ? MEDIA.dockerConfig : MEDIA.ociConfig, ociConfig);
  return s.json(mediaType, { schemaVersion: 2, mediaType, config, layers });
}

function index(s: Store, entries: { image: Descriptor; platform?: Platform }[]): Descriptor {
  const manifests = entries.map((e) =>
    e.platform === undefined ? e.image : { ...e.image, platform: e.platform },
  );
  return s.json(MEDIA.ociIndex, { schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests });
}

const compat = (s: Store, entries: TarEntry[], mediaType: string = MEDIA.ociLayerGzip) =>
  s.blob(mediaType, makeTarGz(entries));
const gzLayer = (s: Store, gz: Uint8Array) => s.blob(MEDIA.ociLayerGzip, gz);
const wasmLayer = (s: Store, module: Uint8Array) =>
  s.blob(MEDIA.wasmArtifactLayer, module, { 'org.opencontainers.image.title': 'filter.wasm' });
const runtimeLayer = (s: Store) => s.json(MEDIA.wasmArtifactConfig, runtimeConfig);
const solo = (s: Store, layers: Descriptor[]) =>
  image(s, layers, { config: s.json(MEDIA.wasmArtifactConfig, runtimeConfig) });
const plugin = (content: Uint8Array | string, name = 'plugin.wasm'): TarEntry => ({ name, content });

const loads = (module: Uint8Array, format: WasmFormat): Outcome => ({ bytes: module, format });
const SAFETY = 'the mirror never reads a path outside the archive root';

const rows: Row[] = [
  // TestImageFetcher_Fetch: through PrepareFetch, against a registry.
  {
    name: 'TestImageFetcher_Fetch/docker image',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A)], MEDIA.dockerLayerGzip)], { docker: true }),
    real: true,
  },
  {
    name: 'TestImageFetcher_Fetch/OCI standard',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A)])]),
    real: true,
  },
  {
    name: 'TestImageFetcher_Fetch/OCI artifact',
    istio: 'loads',
    mirror: loads(A, 'wasm-artifact'),
    build: (s) => image(s, [wasmLayer(s, A), runtimeLayer(s)]),
    real: true,
  },
  {
    name: 'TestImageFetcher_Fetch/invalid image',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [s.blob(MEDIA.ociLayer, makeTar([{ name: 'not-wasm.txt', content: 'a' }]))]),
  },
  {
    name: 'TestImageFetcher_Fetch/invalid image, with a plugin.wasm in its uncompressed layer',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [s.blob(MEDIA.ociLayer, makeTar([plugin(A)]))]),
  },
  {
    name: 'TestWasmCache/fetch oci with digest',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A)], MEDIA.dockerLayerGzip)], { docker: true }),
    byDigest: true,
  },
  {
    name: 'TestWasmCache/invalid wasm header',
    istio: 'refuses',
    mirror: { refuses: 'NOT_WASM' },
    build: (s) => image(s, [compat(s, [plugin(NOT_WASM)])]),
  },

  // TestExtractDockerImage
  {
    name: 'TestExtractDockerImage/no layers',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [], { docker: true }),
  },
  {
    name: 'TestExtractDockerImage/valid layers/one layer',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A)], MEDIA.dockerLayerGzip)], { docker: true }),
  },
  {
    name: 'TestExtractDockerImage/valid layers/more than one layer',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      image(s, [compat(s, [], MEDIA.dockerLayerGzip), compat(s, [plugin(A)], MEDIA.dockerLayerGzip)], {
        docker: true,
      }),
  },
  {
    name: 'TestExtractDockerImage/invalid media type',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) =>
      image(s, [s.blob('application/vnd.docker.plugin.v1+json', makeTarGz([plugin(A)]))], { docker: true }),
  },

  // TestExtractOCIStandardImage
  {
    name: 'TestExtractOCIStandardImage/no layers',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, []),
  },
  {
    name: 'TestExtractOCIStandardImage/valid layers/one layer',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A)])]),
  },
  {
    name: 'TestExtractOCIStandardImage/valid layers/more than one layer',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [], MEDIA.dockerLayerGzip), compat(s, [plugin(A)])]),
  },
  {
    name: 'TestExtractOCIStandardImage/invalid media type (a Docker layer in an OCI image)',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [compat(s, [plugin(A)], MEDIA.dockerLayerGzip)]),
  },

  // TestExtractOCIArtifactImage
  {
    name: 'TestExtractOCIArtifactImage/valid',
    istio: 'loads',
    mirror: loads(A, 'wasm-artifact'),
    build: (s) => solo(s, [wasmLayer(s, A), runtimeLayer(s)]),
  },
  {
    name: 'TestExtractOCIArtifactImage/invalid number of layers',
    istio: 'refuses',
    mirror: loads(A, 'wasm-artifact-1layer'),
    difference: 'extension: one Wasm layer (wasm-to-oci, oras push) is unambiguous',
    build: (s) => solo(s, [wasmLayer(s, A)]),
    real: true,
  },
  {
    name: 'TestExtractOCIArtifactImage/invalid media types',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [s.blob('aaa', A), s.blob('aaa', B)]),
  },

  // TestExtractWasmPluginBinary
  {
    name: 'TestExtractWasmPluginBinary/ok',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A)])]),
  },
  {
    name: 'TestExtractWasmPluginBinary/ok with relative path prefix',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A, './plugin.wasm')])]),
  },
  {
    name: 'TestExtractWasmPluginBinary/not found',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [compat(s, [{ name: 'non-wasm.txt', content: '\x01' }])]),
  },

  // PrepareFetch: which variant, in which order.
  {
    name: 'PrepareFetch: a Docker manifest is read as a Docker compat image only',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [compat(s, [plugin(A)])], { docker: true }),
  },
  {
    name: 'PrepareFetch: the compat variant before the oci variant',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [wasmLayer(s, B), compat(s, [plugin(A)])]),
    real: true,
  },
  {
    name: 'PrepareFetch: the oci variant when the compat layer has no plugin.wasm',
    istio: 'loads',
    mirror: loads(B, 'wasm-artifact'),
    build: (s) => image(s, [wasmLayer(s, B), compat(s, [{ name: 'README', content: 'hi' }])]),
  },
  {
    name: 'PrepareFetch: the oci variant when the tar+gzip layer is not gzip',
    istio: 'loads',
    mirror: loads(B, 'wasm-artifact'),
    build: (s) => image(s, [wasmLayer(s, B), s.blob(MEDIA.ociLayerGzip, makeTar([plugin(A)]))]),
  },
  {
    name: 'PrepareFetch: the oci variant when plugin.wasm is cut short',
    istio: 'loads',
    mirror: loads(B, 'wasm-artifact'),
    build: (s) => image(s, [wasmLayer(s, B), gzLayer(s, gzipSync(makeTar([plugin(A)]).subarray(0, 600)))]),
  },
  {
    name: 'PrepareFetch: a plugin.wasm that is not Wasm ends the fetch',
    istio: 'refuses',
    mirror: { refuses: 'NOT_WASM' },
    build: (s) => image(s, [wasmLayer(s, B), compat(s, [plugin(NOT_WASM)])]),
  },
  {
    name: 'PrepareFetch: the config media type is not looked at',
    istio: 'loads',
    mirror: loads(A, 'wasm-artifact'),
    build: (s) => image(s, [s.blob('application/octet-stream', B), wasmLayer(s, A)]),
  },

  // extractOCIArtifactImage
  {
    name: 'extractOCIArtifactImage: the first of two Wasm layers',
    istio: 'loads',
    mirror: loads(A, 'wasm-artifact'),
    build: (s) => solo(s, [wasmLayer(s, A), wasmLayer(s, B)]),
  },
  {
    name: 'extractOCIArtifactImage: three layers',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => solo(s, [runtimeLayer(s), wasmLayer(s, A), s.blob('application/octet-stream', B)]),
  },

  // extractWasmPluginBinary: the first tar entry whose base name is plugin.wasm.
  {
    name: 'extractWasmPluginBinary: the first of two plugin.wasm entries',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A), plugin(B, 'x/plugin.wasm')])]),
  },
  {
    name: 'extractWasmPluginBinary: by base name, in a subdirectory',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      image(s, [
        compat(s, [
          { name: 'etc/', type: 'dir' },
          { name: 'etc/readme', content: 'x' },
          plugin(A, 'a/b/plugin.wasm'),
        ]),
      ]),
  },
  {
    name: 'extractWasmPluginBinary: a directory named plugin.wasm comes first',
    istio: 'refuses',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    build: (s) => image(s, [compat(s, [{ name: 'plugin.wasm/', type: 'dir' }, plugin(A)])]),
  },
  {
    name: 'extractWasmPluginBinary: a directory named plugin.wasm declaring a size',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [compat(s, [{ name: 'plugin.wasm/', type: 'dir', size: 16 }, plugin(A)])]),
  },
  {
    name: 'extractWasmPluginBinary: a directory named plugin.wasm declaring a size, then the oci variant',
    istio: 'loads',
    mirror: loads(B, 'wasm-artifact'),
    build: (s) =>
      image(s, [wasmLayer(s, B), compat(s, [{ name: 'plugin.wasm/', type: 'dir', size: 16 }, plugin(A)])]),
  },
  {
    name: 'extractWasmPluginBinary: a symlink named plugin.wasm',
    istio: 'refuses',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    build: (s) =>
      image(s, [
        compat(s, [{ name: 'plugin.wasm', type: 'symlink', linkname: 'real.wasm' }, plugin(A, 'real.wasm')]),
      ]),
  },
  {
    name: 'extractWasmPluginBinary: a hard link named plugin.wasm',
    istio: 'refuses',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    build: (s) =>
      image(s, [
        compat(s, [plugin(A, 'real.wasm'), { name: 'plugin.wasm', type: 'hardlink', linkname: 'real.wasm' }]),
      ]),
  },
  {
    name: 'extractWasmPluginBinary: only an earlier layer holds plugin.wasm',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [compat(s, [plugin(A)]), compat(s, [{ name: 'README', content: 'x' }])]),
  },
  {
    name: 'extractWasmPluginBinary: ../plugin.wasm',
    istio: 'loads',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    difference: SAFETY,
    build: (s) => image(s, [compat(s, [plugin(A, '../plugin.wasm')])]),
  },
  {
    name: 'extractWasmPluginBinary: /plugin.wasm',
    istio: 'loads',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    difference: SAFETY,
    build: (s) => image(s, [compat(s, [plugin(A, '/plugin.wasm')])]),
  },

  // archive/tar, the reader extractWasmPluginBinary walks the layer with.
  {
    name: 'archive/tar: a directory carries no data, whatever its size field says',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    // A reader that skipped the directory's declared size would land on B instead.
    build: (s) =>
      image(s, [
        compat(s, [
          { name: 'd/', type: 'dir', size: 512 + Math.ceil(A.length / 512) * 512 },
          plugin(A),
          plugin(B, 'b/plugin.wasm'),
        ]),
      ]),
  },
  {
    name: 'archive/tar: a pax header replaces the one before it',
    istio: 'loads',
    mirror: loads(B, 'compat-image'),
    build: (s) =>
      image(s, [
        compat(s, [
          { name: 'PaxHeader', typeflag: 'x', content: paxRecords({ path: 'plugin.wasm' }) },
          { name: 'PaxHeader', typeflag: 'x', content: paxRecords({ mtime: '1767225600' }) },
          { name: 'other.txt', content: 'not this one' },
          plugin(B),
        ]),
      ]),
  },
  {
    name: 'archive/tar: a pax path',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [compat(s, [plugin(A, `${'long-directory-name/'.repeat(8)}plugin.wasm`)])]),
  },
  {
    name: 'archive/tar: a GNU long name',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      image(s, [
        compat(s, [{ ...plugin(A, `${'gnu-directory/'.repeat(9)}plugin.wasm`), gnuLongName: true }]),
      ]),
  },
  {
    name: 'archive/tar: a header checksum over signed bytes',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      image(s, [compat(s, [{ name: 'café.txt', content: 'x', signedChecksum: true }, plugin(A)])]),
  },
  {
    name: 'archive/tar: a pax global header named plugin.wasm',
    istio: 'refuses',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    build: (s) =>
      image(s, [
        compat(s, [{ name: 'plugin.wasm', typeflag: 'g', content: paxRecords({ comment: 'x' }) }, plugin(A)]),
      ]),
  },
  {
    name: 'archive/tar: an old regular-file type with a trailing slash is a directory',
    istio: 'refuses',
    mirror: { refuses: 'UNSAFE_ARCHIVE' },
    build: (s) => image(s, [compat(s, [{ name: 'plugin.wasm/', typeflag: '\0' }, plugin(A)])]),
  },
  {
    name: 'archive/tar: a zero block ends the archive',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) =>
      image(s, [gzLayer(s, gzipSync(Buffer.concat([new Uint8Array(512), makeTar([plugin(A)])])))]),
  },

  // compress/gzip, the reader under archive/tar.
  {
    name: 'compress/gzip: concatenated members',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => {
      const tar = makeTar([plugin(A)]);
      return image(s, [
        gzLayer(s, Buffer.concat([gzipSync(tar.subarray(0, 700)), gzipSync(tar.subarray(700))])),
      ]);
    },
  },
  {
    name: 'compress/gzip: bytes after the last member',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      image(s, [gzLayer(s, Buffer.concat([makeTarGz([plugin(A)]), Buffer.from('trailing bytes')]))]),
  },
  {
    name: 'compress/gzip: reserved header flags',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [gzLayer(s, gzipMember(makeTar([plugin(A)]), { reservedFlags: 0x20 }))]),
  },
  {
    name: 'compress/gzip: a name, a comment, extra data and a header checksum',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      image(s, [
        gzLayer(
          s,
          gzipMember(makeTar([plugin(A)]), {
            name: 'layer.tar',
            comment: 'built by hand',
            extra: Uint8Array.of(1, 2, 3),
            headerCrc: true,
          }),
        ),
      ]),
  },
  {
    name: 'compress/gzip: a header checksum that does not match',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [gzLayer(s, gzipMember(makeTar([plugin(A)]), { headerCrc: 'wrong' }))]),
  },
  {
    name: 'compress/gzip: a header name of 512 bytes',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => image(s, [gzLayer(s, gzipMember(makeTar([plugin(A)]), { name: 'n'.repeat(512) }))]),
  },
  {
    name: 'compress/gzip: a header name of 511 bytes',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => image(s, [gzLayer(s, gzipMember(makeTar([plugin(A)]), { name: 'n'.repeat(511) }))]),
  },
  {
    name: 'compress/gzip: a header name of 512 bytes, then the oci variant',
    istio: 'loads',
    mirror: loads(B, 'wasm-artifact'),
    build: (s) =>
      image(s, [wasmLayer(s, B), gzLayer(s, gzipMember(makeTar([plugin(A)]), { name: 'n'.repeat(512) }))]),
  },
  {
    name: 'compress/gzip: a member checksum that does not match, after plugin.wasm',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) => {
      const gz = Buffer.from(makeTarGz([plugin(A)]));
      gz.writeUInt32LE((gz.readUInt32LE(gz.length - 8) + 1) >>> 0, gz.length - 8);
      return image(s, [gzLayer(s, gz)]);
    },
  },
  {
    name: 'compress/gzip: a layer that ends inside its gzip data',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) => {
      const gz = makeTarGz([{ name: 'README', content: 'x'.repeat(4000) }, plugin(A)]);
      return image(s, [gzLayer(s, gz.subarray(0, 40))]);
    },
  },

  // go-containerregistry's remote.Image: how Istio resolves an index (linux/amd64 by default).
  {
    name: 'remote.Image: linux/amd64 over a Wasm platform',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      index(s, [
        {
          image: solo(s, [wasmLayer(s, B), runtimeLayer(s)]),
          platform: { os: 'wasip1', architecture: 'wasm' },
        },
        { image: image(s, [compat(s, [plugin(A)])]), platform: { os: 'linux', architecture: 'amd64' } },
      ]),
    real: true,
  },
  {
    name: 'remote.Image: an entry without a platform counts as linux/amd64',
    istio: 'loads',
    mirror: loads(A, 'wasm-artifact'),
    build: (s) =>
      index(s, [
        { image: image(s, [compat(s, [plugin(B)])]), platform: { os: 'linux', architecture: 'arm64' } },
        { image: solo(s, [wasmLayer(s, A), runtimeLayer(s)]) },
      ]),
  },
  {
    name: 'remote.Image: the first linux/amd64 entry, whatever its variant',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      index(s, [
        {
          image: image(s, [compat(s, [plugin(A)])]),
          platform: { os: 'linux', architecture: 'amd64', variant: 'v3' },
        },
        { image: image(s, [compat(s, [plugin(B)])]), platform: { os: 'linux', architecture: 'amd64' } },
      ]),
  },
  {
    name: 'remote.Image: no linux/amd64 entry',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) =>
      index(s, [
        {
          image: solo(s, [wasmLayer(s, A), runtimeLayer(s)]),
          platform: { os: 'wasip1', architecture: 'wasm' },
        },
      ]),
  },
  {
    name: 'remote.Image: only the chosen entry is read',
    istio: 'refuses',
    mirror: { refuses: 'UNSUPPORTED_FORMAT' },
    build: (s) =>
      index(s, [
        {
          image: image(s, [compat(s, [{ name: 'README', content: 'x' }])]),
          platform: { os: 'linux', architecture: 'amd64' },
        },
        { image: solo(s, [wasmLayer(s, A), runtimeLayer(s)]) },
      ]),
  },
  {
    name: 'remote.Image: an index inside an index',
    istio: 'loads',
    mirror: loads(A, 'compat-image'),
    build: (s) =>
      index(s, [
        {
          image: index(s, [
            { image: image(s, [compat(s, [plugin(A)])]), platform: { os: 'linux', architecture: 'amd64' } },
          ]),
        },
      ]),
  },
  {
    name: 'remote.Image: an index of a one-layer Wasm artifact',
    istio: 'refuses',
    mirror: loads(A, 'wasm-artifact-1layer'),
    difference: 'extension: the entry Istio would pick, read as the mirror reads a one-layer artifact',
    build: (s) => index(s, [{ image: solo(s, [wasmLayer(s, A)]) }]),
  },

  // The mirror's other extension.
  {
    name: 'CNCF Wasm OCI artifact (wkg, Spin, wasmCloud)',
    istio: 'refuses',
    mirror: loads(A, 'cncf-wasm'),
    difference: 'extension: config application/vnd.wasm.config.v0+json and one application/wasm layer',
    build: (s) =>
      image(s, [s.blob(MEDIA.cncfWasmLayer, A)], {
        config: s.json(MEDIA.cncfWasmConfig, { architecture: 'wasm', os: 'wasip2', layerDigests: [] }),
      }),
    real: true,
  },
];

const MANIFEST_TYPES = new Set<string>([
  MEDIA.ociManifest,
  MEDIA.ociIndex,
  MEDIA.dockerManifest,
  MEDIA.dockerList,
]);

/** Lays a row out on the scripted registry under `repo`; returns the top manifest's digest. */
function putOnFake(fake: FakeRegistry, repo: string, row: Row): string {
  const manifests = new Map<string, Uint8Array>();
  const store: Store = {
    blob: (mediaType, content, annotations) => ({
      mediaType,
      digest: fake.putBlob(content),
      size: content.length,
      ...(annotations === undefined ? {} : { annotations }),
    }),
    json: (mediaType, value) => {
      const content = bytes(value);
      if (!MANIFEST_TYPES.has(mediaType)) return store.blob(mediaType, content);
      const digest = fake.putManifest(repo, [], content, mediaType);
      manifests.set(digest, content);
      return { mediaType, digest, size: content.length };
    },
  };
  const top = row.build(store);
  return fake.putManifest(repo, ['v1'], manifests.get(top.digest)!, top.mediaType);
}

function expectOutcome(row: Row, dir: string, result: unknown): void {
  if ('refuses' in row.mirror) {
    expect(result).toBeInstanceOf(WasmMirrorError);
    expect((result as WasmMirrorError).code).toBe(row.mirror.refuses);
    expect(readdirSync(dir)).toEqual([]);
    return;
  }
  if (result instanceof Error) throw result;
  const module = row.mirror.bytes;
  expect(new Uint8Array(readFileSync(join(dir, 'out.wasm')))).toEqual(module);
  expect(result).toMatchObject({
    format: row.mirror.format,
    sha256: createHash('sha256').update(module).digest('hex'),
    size: module.length,
  });
  expect(readdirSync(dir)).toEqual(['out.wasm']);
}

describe('the table itself', () => {
  it.each(rows.map((row) => [row.name, row] as const))(
    '%s: the recorded format says whether Istio loads it',
    (_name, row) => {
      // Prepare
      const loadsHere = 'bytes' in row.mirror;

      // Act
      const istioLoadsRecorded = loadsHere && istioLoadsFormat((row.mirror as { format: WasmFormat }).format);

      // Assess
      if (row.difference === undefined) {
        expect(loadsHere).toBe(row.istio === 'loads');
        if (loadsHere) expect(istioLoadsRecorded).toBe(true);
      } else if (loadsHere) {
        expect(row.istio).toBe('refuses');
        expect(istioLoadsRecorded).toBe(false);
      } else {
        expect(row.istio).toBe('loads');
      }
    },
  );
});

describe('the formats the puller records', () => {
  const formats = [...new Set(rows.flatMap((row) => ('format' in row.mirror ? [row.mirror.format] : [])))];

  it.each(formats)('%s travels in a record and is signed in a manifest', (format) => {
    // Prepare
    const record = {
      name: 'registry.example/plugins/x',
      tag: 'v1',
      ociDigest: `sha256:${'a'.repeat(64)}`,
      sha256: 'b'.repeat(64),
      size: 8,
      format,
      kind: 'module',
      mirroredAt: '2026-01-01T00:00:00.000Z',
    };

    // Act
    const parsed = moduleRecordSchema.parse(record);
    const payload = buildPayload({ mirror: 'prod-mesh', version: 1, modules: [parsed] });

    // Assess
    expect(payload.modules[0]?.format).toBe(format);
  });
});

describe('Istio parity on the scripted registry', () => {
  let fake: FakeRegistry;

  beforeAll(async () => {
    fake = await startFakeRegistry();
  });
  afterAll(async () => {
    await fake?.stop();
  });

  it.each(rows.map((row, i) => [row.name, row, `parity/row-${i}`] as const))(
    '%s',
    async (_name, row, repo) => {
      // Prepare
      const digest = putOnFake(fake, repo, row);
      const dir = mkdtempSync(join(tmpdir(), 'wm-parity-'));
      const puller = new OciWasmPuller({ retry: { maxAttempts: 1 } });

      try {
        // Act
        const result = await puller
          .pullToFile(
            {
              registry: fake.host,
              repository: repo,
              reference: row.byDigest === true ? digest : 'v1',
              insecure: true,
            },
            join(dir, 'out.wasm'),
          )
          .catch((err: unknown) => err);

        // Assess
        expectOutcome(row, dir, result);
        if (!(result instanceof Error)) expect(result).toMatchObject({ ociDigest: digest });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});

describe('Istio parity on a real registry (Distribution, pushed with skopeo)', () => {
  let reg: TestRegistry;

  beforeAll(async () => {
    reg = await startRegistry();
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it.each(
    rows.filter((row) => row.real === true).map((row, i) => [row.name, row, `parity/real-${i}`] as const),
  )('%s', async (_name, row, repo) => {
    // Prepare
    // skopeo reads only OCI manifests from a layout; a Docker image is converted on the way.
    const docker = row.name === 'TestImageFetcher_Fetch/docker image';
    const { digest } = docker
      ? await pushWasm(reg.host, `${repo}:v1`, A, 'compat-docker')
      : await pushLayout(reg.host, `${repo}:v1`, (blobs) =>
          row.build({
            blob: (mediaType, content, annotations) => blobs.put(mediaType, content, annotations),
            json: (mediaType, value) => blobs.putJson(mediaType, value),
          }),
        );
    const dir = mkdtempSync(join(tmpdir(), 'wm-parity-real-'));

    try {
      // Act
      const result = await new OciWasmPuller()
        .pullToFile(
          { registry: reg.host, repository: repo, reference: 'v1', insecure: true },
          join(dir, 'out.wasm'),
        )
        .catch((err: unknown) => err);

      // Assess
      expectOutcome(row, dir, result);
      if (!(result instanceof Error)) expect(result).toMatchObject({ ociDigest: digest });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('pushes the Docker image as Docker v2s2, as the Istio test sets it', async () => {
    // Prepare
    const { digest } = await pushWasm(reg.host, 'parity/docker-check:v1', A, 'compat-docker');

    // Act
    const response = await fetch(`${reg.url}/v2/parity/docker-check/manifests/${digest}`, {
      headers: { accept: MEDIA.dockerManifest },
    });
    const manifest = (await response.json()) as { mediaType: string; layers: { mediaType: string }[] };

    // Assess
    expect(manifest.mediaType).toBe(MEDIA.dockerManifest);
    expect(manifest.layers.map((l) => l.mediaType)).toEqual([MEDIA.dockerLayerGzip]);
  });
});
