/**
 * A minimal OCI push over the Distribution API (monolithic blob uploads, then the manifest),
 * so a benchmark knows the exact instant the registry accepted the manifest, which is when it
 * sends its push notification.
 */
import { createHash } from 'node:crypto';

const sha = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function putBlob(base: string, repo: string, bytes: Uint8Array): Promise<string> {
  const digest = sha(bytes);
  const head = await fetch(`${base}/v2/${repo}/blobs/${digest}`, { method: 'HEAD' });
  if (head.ok) return digest;
  const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`upload start: ${start.status}`);
  const location = new URL(start.headers.get('location')!, base);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream' },
    body: new Uint8Array(bytes),
  });
  if (put.status !== 201) throw new Error(`blob put: ${put.status} ${await put.text()}`);
  return digest;
}

/** Uploads a Wasm-artifact's blobs; returns a function that PUTs the manifest (the timed step). */
export async function prepareWasmArtifactPush(
  registryUrl: string,
  repo: string,
  tag: string,
  module: Uint8Array,
): Promise<{ digest: string; putManifest: () => Promise<void> }> {
  const config = new TextEncoder().encode('{}');
  const configDigest = await putBlob(registryUrl, repo, config);
  const layerDigest = await putBlob(registryUrl, repo, module);
  const manifest = new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.module.wasm.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        {
          mediaType: 'application/vnd.module.wasm.content.layer.v1+wasm',
          digest: layerDigest,
          size: module.length,
        },
      ],
    }),
  );
  return {
    digest: sha(manifest),
    putManifest: async () => {
      const res = await fetch(`${registryUrl}/v2/${repo}/manifests/${tag}`, {
        method: 'PUT',
        headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
        body: manifest,
      });
      if (res.status !== 201) throw new Error(`manifest put: ${res.status} ${await res.text()}`);
    },
  };
}
