import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.ts';

/** Manifest media types a push of which can carry a Wasm module. */
const MANIFEST_MEDIA_TYPE_SET: ReadonlySet<string> = new Set(MANIFEST_MEDIA_TYPES);

export function isManifestMediaType(mediaType: string | undefined): boolean {
  if (mediaType === undefined) return false;
  return MANIFEST_MEDIA_TYPE_SET.has(mediaType.split(';')[0]!.trim().toLowerCase());
}
