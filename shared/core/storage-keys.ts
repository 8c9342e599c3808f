/**
 * Every object key the mirror reads or writes, in one place. The published layout (modules,
 * manifests, keys.json) is a contract with agents and Istio; `state/` is the pipeline's own
 * bookkeeping, never served. Infra grants and lifecycle rules use the prefixes from here too.
 */
import { createHash } from 'node:crypto';

const sha256Hex = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * What the mirror knows about one manifest digest of a repository: what it extracted to, why it
 * was refused, or (`oci`) which kept manifests and blobs it reaches.
 */
export type DigestNoteKind = 'pulled' | 'rejected' | 'oci';

export const storageKeys = {
  /** A module's location is a pure function of its sha256. */
  module: (sha256Hex: string) => `modules/sha256/${sha256Hex}.wasm`,
  /**
   * An upstream manifest, config or layer kept at intake, byte for byte, under its digest. Served
   * only through the registry API, and only while a listed entry reaches it (its `oci` note).
   */
  blob: (sha256Hex: string) => `${contentPrefixes.blobs}${sha256Hex}`,
  manifest: (version: number) => `manifests/${version}.json`,
  latestManifest: 'manifests/latest.json',
  keys: 'keys.json',
  /** `state/deliveries/<source>/<sha256(delivery id)>`: a webhook delivery already accepted. */
  deliveryMarker: (sourceId: string, deliveryId: string) =>
    `${statePrefixes.deliveries}${sourceId}/${sha256Hex(deliveryId)}`,
  /** `state/tags/<sha256(name NUL tag)>.json`: the newest registry observation of a tag; the publisher's alone. */
  tagObservation: (name: string, tag: string) =>
    `${statePrefixes.tags}${sha256Hex(`${name}\u0000${tag}`)}.json`,
  /** `state/unlisted/<sha256>`: since when no manifest lists a module (its bytes go after a grace period). */
  unlistedNote: (sha256Hex: string) => `${statePrefixes.unlisted}${sha256Hex}`,
  /** `state/<kind>/<sha256(name@digest)>.json`. */
  digestNote: (kind: DigestNoteKind, name: string, ociDigest: string) =>
    `state/${kind}/${sha256Hex(`${name}@${ociDigest}`)}.json`,
} as const;

/** Key prefixes, for listings, grants and lifecycle rules. */
export const statePrefixes = {
  deliveries: 'state/deliveries/',
  pulled: 'state/pulled/',
  rejected: 'state/rejected/',
  oci: 'state/oci/',
  tags: 'state/tags/',
  unlisted: 'state/unlisted/',
} as const;

export const publishedPrefixes = {
  modules: 'modules/',
  manifests: 'manifests/',
} as const;

/** Upstream content kept at intake: never served as it is, only through the registry API's checks. */
export const contentPrefixes = {
  blobs: 'blobs/sha256/',
} as const;
