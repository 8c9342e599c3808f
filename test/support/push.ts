/**
 * Pushes a Wasm module to a registry in one of the packagings meshes use, the way real tools lay
 * them out: an OCI image layout is written to a temp dir and copied with `skopeo copy`.
 *
 *   const { digest } = await pushWasm(reg.host, 'plugins/auth:1.0', bytes, 'compat-docker',
 *     { credentials: { username, password } });
 *   await pushLayout(reg.host, 'plugins/odd:1.0', (blobs) => blobs.putJson(MEDIA.ociManifest, {...}));
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { makeTar } from './tar.ts';

const execFileAsync = promisify(execFile);

export type PushFormat =
  | 'wasm-artifact'
  | 'wasm-artifact-1layer'
  | 'compat-oci'
  | 'compat-docker'
  | 'cncf-wasm'
  | 'index';

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  wasmArtifactConfig: 'application/vnd.module.wasm.config.v1+json',
  wasmArtifactLayer: 'application/vnd.module.wasm.content.layer.v1+wasm',
  cncfWasmConfig: 'application/vnd.wasm.config.v0+json',
  cncfWasmLayer: 'application/wasm',
} as const;

export interface PushOptions {
  credentials?: { username: string; password: string };
  /** For 'index': the format of the one image the index points to (default 'wasm-artifact'). */
  indexOf?: Exclude<PushFormat, 'index' | 'compat-docker'>;
  /** For 'index': the entry's platform (default none, which Istio reads as linux/amd64). */
  platform?: Platform;
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

/** Pushes `bytes` as `repoAndTag` (e.g. `plugins/auth:1.0`); returns the manifest digest in the registry. */
export async function pushWasm(
  registryHost: string,
  repoAndTag: string,
  bytes: Uint8Array,
  format: PushFormat,
  opts: PushOptions = {},
): Promise<{ digest: string }> {
  return pushLayout(
    registryHost,
    repoAndTag,
    (blobs) => {
      if (format !== 'index')
        return buildImage(blobs, bytes, format === 'compat-docker' ? 'compat-oci' : format);
      const inner = buildImage(blobs, bytes, opts.indexOf ?? 'wasm-artifact');
      if (opts.platform !== undefined) inner.platform = opts.platform;
      return blobs.putJson(MEDIA.ociIndex, {
        schemaVersion: 2,
        mediaType: MEDIA.ociIndex,
        manifests: [inner],
      });
    },
    { ...opts, dockerV2s2: format === 'compat-docker' },
  );
}

/**
 * Pushes whatever `build` lays out (it returns the top manifest or index) with `skopeo copy`,
 * digests preserved, or converted to Docker v2s2 with `dockerV2s2`. Returns the pushed digest.
 */
export async function pushLayout(
  registryHost: string,
  repoAndTag: string,
  build: (blobs: OciLayout) => Descriptor,
  opts: { credentials?: { username: string; password: string }; dockerV2s2?: boolean } = {},
): Promise<{ digest: string }> {
  const layout = mkdtempSync(join(tmpdir(), 'wm-layout-'));
  try {
    const blobs = new OciLayout(layout);
    const top = build(blobs);
    blobs.writeIndex({ ...top, annotations: { 'org.opencontainers.image.ref.name': 'push' } });
    const digestFile = join(layout, 'pushed.digest');
    const args = [
      '--insecure-policy',
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      '--digestfile',
      digestFile,
    ];
    if (opts.dockerV2s2 === true) args.push('--format', 'v2s2');
    else args.push('--preserve-digests');
    if (top.mediaType === MEDIA.ociIndex || top.mediaType === MEDIA.dockerList) args.push('--all');
    if (opts.credentials !== undefined) {
      args.push('--dest-creds', `${opts.credentials.username}:${opts.credentials.password}`);
    }
    args.push(`oci:${layout}:push`, `docker://${registryHost}/${repoAndTag}`);
    try {
      await execFileAsync('skopeo', args, { env: { ...process.env, HOME: layout } });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`skopeo copy failed: ${e.stderr ?? e.message}`);
    }
    return { digest: readFileSync(digestFile, 'utf8').trim() };
  } finally {
    rmSync(layout, { recursive: true, force: true });
  }
}

function buildImage(
  blobs: OciLayout,
  bytes: Uint8Array,
  format: 'wasm-artifact' | 'wasm-artifact-1layer' | 'compat-oci' | 'cncf-wasm',
): Descriptor {
  if (format === 'wasm-artifact' || format === 'wasm-artifact-1layer') {
    // solo.io's `wasme` pushed the runtime config as config and as a layer, the module as the
    // other layer: the two-layer shape Istio loads. wasm-to-oci and `oras push` leave one layer.
    const runtime = { type: 'envoy_proxy', abiVersions: ['v0-097b7f2e4cc1fb490cc1943d0d633655ac3c522f'] };
    const config = blobs.putJson(MEDIA.wasmArtifactConfig, runtime);
    const module = blobs.put(MEDIA.wasmArtifactLayer, bytes, {
      'org.opencontainers.image.title': 'plugin.wasm',
    });
    const layers =
      format === 'wasm-artifact'
        ? [{ ...config, annotations: { 'org.opencontainers.image.title': 'runtime-config.json' } }, module]
        : [module];
    return blobs.putJson(MEDIA.ociManifest, {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config,
      layers,
    });
  }
  if (format === 'cncf-wasm') {
    const layer = blobs.put(MEDIA.cncfWasmLayer, bytes);
    const config = blobs.putJson(MEDIA.cncfWasmConfig, {
      created: '2026-01-01T00:00:00Z',
      architecture: 'wasm',
      os: 'wasip2',
      layerDigests: [layer.digest],
    });
    return blobs.putJson(MEDIA.ociManifest, {
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config,
      layers: [layer],
    });
  }
  const tar = makeTar([{ name: 'plugin.wasm', content: bytes }]);
  const layer = blobs.put(MEDIA.ociLayerGzip, new Uint8Array(gzipSync(tar)));
  const config = blobs.putJson(MEDIA.ociConfig, {
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [`sha256:${createHash('sha256').update(tar).digest('hex')}`] },
  });
  return blobs.putJson(MEDIA.ociManifest, {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config,
    layers: [layer],
  });
}

/** A minimal OCI image layout on disk (blobs/sha256/<hex>, index.json, oci-layout). */
export class OciLayout {
  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  }

  put(mediaType: string, bytes: Uint8Array, annotations?: Record<string, string>): Descriptor {
    const hex = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(this.dir, 'blobs', 'sha256', hex), bytes);
    const d: Descriptor = { mediaType, digest: `sha256:${hex}`, size: bytes.length };
    if (annotations !== undefined) d.annotations = annotations;
    return d;
  }

  putJson(mediaType: string, value: unknown): Descriptor {
    return this.put(mediaType, new TextEncoder().encode(JSON.stringify(value)));
  }

  writeIndex(...manifests: Descriptor[]): void {
    writeFileSync(
      join(this.dir, 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.ociIndex, manifests }),
    );
  }
}
