/**
 * Which packaging a manifest is, and which layer holds the module: the layers
 * Istio's own `oci://` fetcher (istio/istio pkg/wasm/imagefetcher.go) would read, in its order,
 * so a tag means the same module through the mirror as through Istio; then, only where Istio
 * would load nothing, the mirror's extensions.
 */
import type { WasmFormat } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import {
  type Descriptor,
  DOCKER_LAYER_TAR_GZIP,
  DOCKER_MANIFEST,
  OCI_LAYER_TAR_GZIP,
} from '../oci/media-types.ts';

export const WASM_ARTIFACT_CONFIG = 'application/vnd.module.wasm.config.v1+json';
export const WASM_ARTIFACT_LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';
export const CNCF_WASM_CONFIG = 'application/vnd.wasm.config.v0+json';
export const CNCF_WASM_LAYER = 'application/wasm';
/** The file a compat image carries the module in (matched by base name). */
export const COMPAT_ENTRY = 'plugin.wasm';

/** Whether Istio's `oci://` fetcher loads each format; a record keeps its format so tools can refuse the rest. */
const ISTIO_LOADS: Record<WasmFormat, boolean> = {
  'compat-image': true,
  'wasm-artifact': true,
  'wasm-artifact-1layer': false,
  'cncf-wasm': false,
};

/** True when Istio's own fetcher loads an artifact of this format from `oci://` (the same bytes). */
export function istioLoadsFormat(format: WasmFormat): boolean {
  return ISTIO_LOADS[format] === true;
}

export type Archive = 'none' | 'tar+gzip';

export interface WasmLayer {
  format: WasmFormat;
  layer: Descriptor;
  archive: Archive;
}

/**
 * A compat layer that Istio's reader fails on too (not gzip, not a readable tar, no
 * `plugin.wasm`): Istio then tries the next packaging, and so does the mirror. Any other error
 * ends the pull, including a `plugin.wasm` that turns out not to be Wasm.
 */
export class NotCompatLayer extends WasmMirrorError {
  constructor(message: string) {
    super('UNSUPPORTED_FORMAT', message);
  }
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

/**
 * The layers to read for an image manifest, in order. Istio's order: a Docker v2s2 manifest is
 * a compat image or nothing; any other manifest is tried as a compat image (its last layer), then
 * as a two-layer Wasm artifact. A later candidate is read only when the compat layer turns out
 * to hold no readable `plugin.wasm` (NotCompatLayer). The extensions, which Istio refuses, come
 * only when Istio has nothing to try.
 */
export function layerCandidates(json: Record<string, unknown>): WasmLayer[] {
  asDescriptor(json.config, 'manifest config');
  if (!Array.isArray(json.layers))
    throw new WasmMirrorError('REGISTRY_PROTOCOL', 'manifest has no layers array');
  const layers = json.layers.map((l, i) => asDescriptor(l, `layer ${i}`));
  const last = layers[layers.length - 1];

  // Istio reads the manifest's own mediaType field here, not the response's Content-Type.
  if (json.mediaType === DOCKER_MANIFEST) {
    if (last?.mediaType === DOCKER_LAYER_TAR_GZIP) {
      return [{ format: 'compat-image', layer: last, archive: 'tar+gzip' }];
    }
    throw new WasmMirrorError(
      'UNSUPPORTED_FORMAT',
      last === undefined
        ? 'Docker image has no layers, so no Wasm module'
        : `Docker image's last layer is ${last.mediaType}, not ${DOCKER_LAYER_TAR_GZIP}`,
    );
  }

  const candidates: WasmLayer[] = [];
  if (last?.mediaType === OCI_LAYER_TAR_GZIP) {
    candidates.push({ format: 'compat-image', layer: last, archive: 'tar+gzip' });
  }
  // Istio takes the first Wasm layer of exactly two, whatever the config says.
  const wasmLayer = layers.find((l) => l.mediaType === WASM_ARTIFACT_LAYER);
  if (layers.length === 2 && wasmLayer !== undefined) {
    candidates.push({ format: 'wasm-artifact', layer: wasmLayer, archive: 'none' });
  }
  if (candidates.length > 0) return candidates;

  const only = layers.length === 1 ? layers[0] : undefined;
  if (only?.mediaType === WASM_ARTIFACT_LAYER) {
    return [{ format: 'wasm-artifact-1layer', layer: only, archive: 'none' }];
  }
  if (only?.mediaType === CNCF_WASM_LAYER) return [{ format: 'cncf-wasm', layer: only, archive: 'none' }];
  throw new WasmMirrorError('UNSUPPORTED_FORMAT', `no Wasm module in ${describeLayers(json, layers)}`);
}

function describeLayers(json: Record<string, unknown>, layers: Descriptor[]): string {
  const config = (json.config as Descriptor).mediaType;
  if (layers.length === 0) return `an image without layers (config ${config})`;
  const types = layers.map((l) => l.mediaType).join(', ');
  const wanted = `a compat image ends with a ${OCI_LAYER_TAR_GZIP} layer; a Wasm artifact has a ${WASM_ARTIFACT_LAYER} layer`;
  return `an image with config ${config} and ${layers.length} layer(s): ${types} (${wanted})`;
}

/**
 * The index entry Istio loads: go-containerregistry's remote.Image resolves an index to the
 * first entry for linux/amd64, an entry without a platform counting as linux/amd64. Variants
 * and features do not matter, nor does any Wasm platform or artifactType.
 */
export function istioIndexEntry(entries: Descriptor[]): Descriptor | undefined {
  return entries.find((d) => {
    const platform = d.platform as unknown;
    if (platform === undefined || platform === null) return true;
    if (typeof platform !== 'object' || Array.isArray(platform)) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', `malformed platform in index entry ${d.digest}`);
    }
    const p = platform as { os?: unknown; architecture?: unknown };
    return p.os === 'linux' && p.architecture === 'amd64';
  });
}
