/**
 * Packages one Wasm module as an OCI artifact the way Istio loads it, byte for byte reproducible:
 * the same module and format always give the same blobs, so the same manifest digest.
 *
 * - `compat`: an OCI image (Istio's "compat" variant): OCI image config for wasm/wasip1, one
 *   `tar+gzip` layer holding `plugin.wasm`, the `module.wasm.image/variant=compat` annotation.
 * - `wasm-artifact`: Istio's "oci" variant as solo.io's `wasme` pushed it: config
 *   `application/vnd.module.wasm.config.v1+json` (the runtime config) and exactly two layers,
 *   that runtime config and the raw module (`application/vnd.module.wasm.content.layer.v1+wasm`).
 * - `cncf-wasm`: the CNCF Wasm OCI artifact: config `application/vnd.wasm.config.v0+json`, one
 *   `application/wasm` layer.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import type { WasmFormat, WasmKind } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { type Descriptor, OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST } from '../oci/media-types.ts';
import {
  CNCF_WASM_CONFIG,
  CNCF_WASM_LAYER,
  COMPAT_ENTRY,
  WASM_ARTIFACT_CONFIG,
  WASM_ARTIFACT_LAYER,
} from './formats.ts';
import { PROXY_ABI_PREFIX, WasmInspector } from './inspect.ts';
import { validateCoreModuleFile } from './validate.ts';

export const PACKAGE_FORMATS = ['compat', 'wasm-artifact', 'cncf-wasm'] as const;
export type PackageFormat = (typeof PACKAGE_FORMATS)[number];

/** The format a pull of the pushed artifact reports (the mirror's record uses the same name). */
export const PULLED_AS: Record<PackageFormat, WasmFormat> = {
  compat: 'compat-image',
  'wasm-artifact': 'wasm-artifact',
  'cncf-wasm': 'cncf-wasm',
};

/** Istio's own size cap on a module; larger ones would never load. */
export const MAX_PUSH_MODULE_BYTES = 256 * 1024 * 1024;

const TITLE = 'org.opencontainers.image.title';
/** Required on an OCI compat image by the compat variant's spec. */
const COMPAT_ANNOTATION = 'module.wasm.image/variant';
const RUNTIME_TYPE_ANNOTATION = 'module.wasm.runtime/type';
const RUNTIME_ABI_ANNOTATION = 'module.wasm.runtime/abi_version';
/** The CNCF config's `created` is required; a fixed value keeps the digest reproducible. */
const EPOCH = '1970-01-01T00:00:00Z';

export interface CheckedModule {
  bytes: Uint8Array<ArrayBuffer>;
  /** Lowercase hex sha256 of the module. */
  sha256: string;
  kind: WasmKind;
  /** The proxy-wasm ABI export (`proxy_abi_version_*`), when the module has one. */
  abi?: string;
}

export interface ArtifactBlob {
  descriptor: Descriptor;
  bytes: Uint8Array<ArrayBuffer>;
}

export interface PackagedModule {
  format: PackageFormat;
  manifest: { mediaType: string; bytes: Uint8Array<ArrayBuffer>; digest: string };
  /** The config and every layer, each blob once. */
  blobs: ArtifactBlob[];
}

/**
 * Reads a module file and checks it as a pull would: the `\0asm` magic, a structural walk of
 * its sections and, for core modules, the engine's validation (never instantiated).
 */
export async function readModuleFile(path: string, maxBytes = MAX_PUSH_MODULE_BYTES): Promise<CheckedModule> {
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    const fh = await open(path, 'r');
    try {
      const tooLarge = (size: number) =>
        new WasmMirrorError('SIZE_EXCEEDED', `${path} is ${size} bytes, over the ${maxBytes}-byte cap`);
      const { size } = await fh.stat();
      if (size > maxBytes) throw tooLarge(size);
      bytes = viewOf(await fh.readFile());
      if (bytes.length > maxBytes) throw tooLarge(bytes.length);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof WasmMirrorError) throw err;
    throw new WasmMirrorError('USAGE', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  const inspector = new WasmInspector();
  let kind: WasmKind;
  try {
    inspector.push(bytes);
    kind = inspector.end();
    if (kind === 'module') await validateCoreModuleFile(path, inspector.sections);
  } catch (err) {
    if (!(err instanceof WasmMirrorError)) throw err;
    throw new WasmMirrorError(err.code, `${path}: ${err.message}`, { cause: err });
  }
  const checked: CheckedModule = { bytes, sha256: createHash('sha256').update(bytes).digest('hex'), kind };
  const abi = kind === 'module' ? inspector.proxyAbi : undefined;
  if (abi !== undefined) checked.abi = abi;
  return checked;
}

/** Builds the artifact's blobs and manifest for one module. */
export function packageModule(module: CheckedModule, format: PackageFormat): PackagedModule {
  switch (format) {
    case 'compat':
      return compatImage(module);
    case 'wasm-artifact':
      return wasmArtifact(module);
    case 'cncf-wasm':
      return cncfWasm(module);
  }
}

function compatImage(module: CheckedModule): PackagedModule {
  const tar = deterministicTar(COMPAT_ENTRY, module.bytes);
  const layer = blob(OCI_LAYER_TAR_GZIP, deterministicGzip(tar));
  const config = jsonBlob(OCI_CONFIG, {
    architecture: 'wasm',
    os: 'wasip1',
    config: {},
    rootfs: { type: 'layers', diff_ids: [digestOf(tar)] },
  });
  return image('compat', config, [layer], { [COMPAT_ANNOTATION]: 'compat' });
}

function wasmArtifact(module: CheckedModule): PackagedModule {
  const abiVersions = module.abi === undefined ? [] : [abiVersion(module.abi)];
  const runtimeConfig = jsonBlob(WASM_ARTIFACT_CONFIG, { type: 'envoy_proxy', abiVersions });
  // Istio's fetcher wants exactly two layers: the runtime config and the module, as wasme pushed them.
  const configLayer = withTitle(runtimeConfig, 'runtime-config.json');
  const content = withTitle(blob(WASM_ARTIFACT_LAYER, module.bytes), COMPAT_ENTRY);
  const annotations: Record<string, string> = { [RUNTIME_TYPE_ANNOTATION]: 'envoy_proxy' };
  if (abiVersions.length > 0) annotations[RUNTIME_ABI_ANNOTATION] = abiVersions.join(',');
  return image('wasm-artifact', runtimeConfig, [configLayer, content], annotations);
}

function cncfWasm(module: CheckedModule): PackagedModule {
  const layer = blob(CNCF_WASM_LAYER, module.bytes);
  const config = jsonBlob(CNCF_WASM_CONFIG, {
    created: EPOCH,
    architecture: 'wasm',
    os: module.kind === 'component' ? 'wasip2' : 'wasip1',
    layerDigests: [layer.descriptor.digest],
  });
  return image('cncf-wasm', config, [layer]);
}

function image(
  format: PackageFormat,
  config: ArtifactBlob,
  layers: ArtifactBlob[],
  annotations?: Record<string, string>,
): PackagedModule {
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: config.descriptor,
    layers: layers.map((l) => l.descriptor),
  };
  if (annotations !== undefined) manifest.annotations = annotations;
  const bytes = new TextEncoder().encode(JSON.stringify(manifest));
  const blobs = new Map<string, ArtifactBlob>();
  for (const b of [config, ...layers]) if (!blobs.has(b.descriptor.digest)) blobs.set(b.descriptor.digest, b);
  return {
    format,
    manifest: { mediaType: OCI_MANIFEST, bytes, digest: digestOf(bytes) },
    blobs: [...blobs.values()],
  };
}

/** `proxy_abi_version_0_2_1` → `v0.2.1`, the form wasme's runtime configs used. */
function abiVersion(exportName: string): string {
  const rest = exportName.slice(PROXY_ABI_PREFIX.length);
  return /^\d+(?:_\d+)*$/.test(rest) ? `v${rest.replaceAll('_', '.')}` : rest;
}

function blob(mediaType: string, bytes: Uint8Array<ArrayBuffer>): ArtifactBlob {
  return { descriptor: { mediaType, digest: digestOf(bytes), size: bytes.length }, bytes };
}

function jsonBlob(mediaType: string, value: unknown): ArtifactBlob {
  return blob(mediaType, new TextEncoder().encode(JSON.stringify(value)));
}

function withTitle(b: ArtifactBlob, title: string): ArtifactBlob {
  return { ...b, descriptor: { ...b.descriptor, annotations: { [TITLE]: title } } };
}

function digestOf(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

const BLOCK = 512;

/**
 * A ustar archive of one regular file with fixed metadata (mode 0644, uid/gid 0, no owner
 * names, mtime 0), so the archive depends on the content alone.
 */
export function deterministicTar(name: string, content: Uint8Array): Uint8Array<ArrayBuffer> {
  if (Buffer.byteLength(name) > 100)
    throw new WasmMirrorError('INTERNAL', `tar entry name too long: ${name}`);
  const header = Buffer.alloc(BLOCK);
  header.write(name, 0, 100, 'utf8');
  header.write('0000644\0', 100, 'ascii'); // mode
  header.write('0000000\0', 108, 'ascii'); // uid
  header.write('0000000\0', 116, 'ascii'); // gid
  header.write(`${content.length.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  header.write('00000000000\0', 136, 'ascii'); // mtime
  header.write('        ', 148, 'ascii'); // checksum is computed over spaces here
  header.write('0', 156, 'ascii'); // regular file
  header.write('ustar\0', 257, 'ascii');
  header.write('00', 263, 'ascii');
  header.write('0000000\0', 329, 'ascii'); // devmajor
  header.write('0000000\0', 337, 'ascii'); // devminor
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  const padding = (BLOCK - (content.length % BLOCK)) % BLOCK;
  return viewOf(Buffer.concat([header, content, Buffer.alloc(padding), Buffer.alloc(2 * BLOCK)]));
}

/**
 * gzip at a fixed level with the header's mtime zeroed and its OS byte set to "unknown" (zlib
 * writes the build platform there), so the bytes do not depend on when or where they were made.
 */
export function deterministicGzip(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = viewOf(gzipSync(bytes, { level: 9 }));
  // RFC 1952 header: bytes 4-7 MTIME, byte 9 OS; no header CRC is set, so nothing else changes.
  out.fill(0, 4, 8);
  out[9] = 0xff;
  return out;
}

/** The bytes of a Buffer without copying them (a module may be hundreds of MiB). */
function viewOf(buf: Buffer): Uint8Array<ArrayBuffer> {
  return new Uint8Array(buf.buffer as ArrayBuffer, buf.byteOffset, buf.byteLength);
}
