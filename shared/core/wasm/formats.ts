/**
 * Which of DESIGN.md's packagings a manifest is, and which layer holds the module.
 */
import type { WasmFormat } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import {
  type Descriptor,
  DOCKER_LAYER_TAR_GZIP,
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
} from '../oci/media-types.ts';

export const WASM_ARTIFACT_CONFIG = 'application/vnd.module.wasm.config.v1+json';
export const WASM_ARTIFACT_LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';
export const CNCF_WASM_CONFIG = 'application/vnd.wasm.config.v0+json';
export const CNCF_WASM_LAYER = 'application/wasm';
/** The file a compat image carries the module in (matched by base name). */
export const COMPAT_ENTRY = 'plugin.wasm';

export type Archive = 'none' | 'tar' | 'tar+gzip';

export interface WasmLayer {
  format: WasmFormat;
  layer: Descriptor;
  archive: Archive;
}

/** Checks a descriptor's shape; the registry's JSON is untrusted. */
export function asDescriptor(value: unknown, what: string): Descriptor {
  const d = value as Partial<Descriptor> | null;
  if (
    d === null ||
    typeof d !== 'object' ||
    typeof d.mediaType !== 'string' ||
    typeof d.digest !== 'string' ||
    typeof d.size !== 'number' ||
    !Number.isSafeInteger(d.size) ||
    d.size < 0
  ) {
    throw new WasmMirrorError('REGISTRY_PROTOCOL', `malformed descriptor in ${what}`);
  }
  return d as Descriptor;
}

/** Picks the module's layer from an image manifest, or UNSUPPORTED_FORMAT. */
export function classifyImage(json: Record<string, unknown>): WasmLayer {
  const config = asDescriptor(json.config, 'manifest config');
  if (!Array.isArray(json.layers))
    throw new WasmMirrorError('REGISTRY_PROTOCOL', 'manifest has no layers array');
  const layers = json.layers.map((l, i) => asDescriptor(l, `layer ${i}`));
  const artifactType = typeof json.artifactType === 'string' ? json.artifactType : undefined;

  const solo = layers.filter((l) => l.mediaType === WASM_ARTIFACT_LAYER);
  if (config.mediaType === WASM_ARTIFACT_CONFIG || solo.length > 0) {
    if (solo.length !== 1) {
      throw new WasmMirrorError(
        'UNSUPPORTED_FORMAT',
        `Wasm artifact with ${solo.length} module layers (want one)`,
      );
    }
    return { format: 'wasm-artifact', layer: solo[0]!, archive: 'none' };
  }
  const cncf = layers.filter((l) => l.mediaType === CNCF_WASM_LAYER);
  if (config.mediaType === CNCF_WASM_CONFIG || artifactType === CNCF_WASM_CONFIG || cncf.length > 0) {
    if (cncf.length !== 1) {
      throw new WasmMirrorError(
        'UNSUPPORTED_FORMAT',
        `CNCF Wasm artifact with ${cncf.length} application/wasm layers (want one)`,
      );
    }
    return { format: 'cncf-wasm', layer: cncf[0]!, archive: 'none' };
  }
  const last = layers[layers.length - 1];
  if (last === undefined)
    throw new WasmMirrorError('UNSUPPORTED_FORMAT', 'image has no layers, so no Wasm module');
  if (last.mediaType === OCI_LAYER_TAR_GZIP || last.mediaType === DOCKER_LAYER_TAR_GZIP) {
    return { format: 'compat-image', layer: last, archive: 'tar+gzip' };
  }
  if (last.mediaType === OCI_LAYER_TAR) return { format: 'compat-image', layer: last, archive: 'tar' };
  throw new WasmMirrorError(
    'UNSUPPORTED_FORMAT',
    `no Wasm layer: config ${config.mediaType}, last layer ${last.mediaType} is not a tar+gzip layer`,
  );
}

/** Index entries worth trying first: Wasm platforms, then the rest in the index's order. */
export function rankIndexEntries(entries: Descriptor[]): Descriptor[] {
  const isWasm = (d: Descriptor) =>
    d.artifactType === WASM_ARTIFACT_CONFIG ||
    d.artifactType === CNCF_WASM_CONFIG ||
    d.platform?.architecture === 'wasm' ||
    (d.platform?.os ?? '').startsWith('wasi');
  return [...entries.filter(isWasm), ...entries.filter((d) => !isWasm(d))];
}
