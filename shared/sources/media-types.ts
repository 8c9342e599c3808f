/** Manifest media types a push of which can carry a Wasm module (DESIGN.md, "Wasm formats accepted"). */
export const MANIFEST_MEDIA_TYPES: ReadonlySet<string> = new Set([
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
]);

export function isManifestMediaType(mediaType: string | undefined): boolean {
  if (mediaType === undefined) return false;
  return MANIFEST_MEDIA_TYPES.has(mediaType.split(';')[0]!.trim().toLowerCase());
}
