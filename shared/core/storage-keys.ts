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
  /** `state/unlisted-oci/<note hash>`: since when no listed entry has this `oci` note (and, once it is being deleted, its blobs). */
  unlistedOciNote: (noteHash: string) => `${statePrefixes.unlistedOci}${noteHash}`,
  /** `state/oci-refs/<blob hex>/`: the markers of one kept blob, listed to find who still needs it. */
  blobRefs: (blobHex: string) => `${statePrefixes.ociRefs}${blobHex}/`,
  /** `state/oci-refs/<blob hex>/<note hash>`: the `oci` note `state/oci/<note hash>.json` reaches this blob. */
  blobRef: (blobHex: string, noteHash: string) => `${statePrefixes.ociRefs}${blobHex}/${noteHash}`,
  /** `state/oci-refs/<blob hex>/created`: stored by an intake that writes references, so every note reaching it has one. */
  blobCreated: (blobHex: string) => `${statePrefixes.ociRefs}${blobHex}/created`,
} as const;

/**
 * How long clients and CDNs may keep what the mirror serves: content named by its digest or
 * version forever; what the next publish may change (the index, latest.json, a tag) briefly,
 * so agents and `oci://` pulls see a publish within half a minute.
 */
export const cacheControls = {
  immutable: 'public, max-age=31536000, immutable',
  latest: 'public, max-age=30',
} as const;

/** Key prefixes, for listings, grants and lifecycle rules. */
export const statePrefixes = {
  deliveries: 'state/deliveries/',
  pulled: 'state/pulled/',
  rejected: 'state/rejected/',
  oci: 'state/oci/',
  tags: 'state/tags/',
  unlisted: 'state/unlisted/',
  /** `state/unlisted-oci/<note hash>`: since when an `oci` note is unlisted (its blobs may go after a grace period). */
  unlistedOci: 'state/unlisted-oci/',
  /** `state/oci-refs/<blob hex>/…`: which `oci` notes reach a kept blob, so deleting it reads no note per listed entry. */
  ociRefs: 'state/oci-refs/',
  /** `state/registry/<source>/<sha256(ociName)>.json`: which `registry/` objects a name has (the publisher's alone). */
  registry: 'state/registry/',
  /** `state/registry-pending/<sha256(name)>`: a name whose `registry/` objects may lag the signed manifest. */
  registryPending: 'state/registry-pending/',
} as const;

export const publishedPrefixes = {
  modules: 'modules/',
  manifests: 'manifests/',
} as const;

/** Upstream content kept at intake: never served as it is, only through the registry API's checks. */
export const contentPrefixes = {
  blobs: 'blobs/sha256/',
} as const;

/**
 * The registry view served by CloudFront (AWS): the answers to `/v2/<ociName>/…` as objects,
 * written by the publisher from each signed manifest, so no code runs on the read path. A
 * CloudFront Function maps a request path to one of these keys and a second one turns their
 * metadata into the registry's headers. `<ociName>` is `<sourceId>/<repository>`; keys of two
 * names never collide, since a tag or digest holds no `/` and the fixed segments differ.
 */
export const registryKeys = {
  prefix: 'registry/',
  /** A listed tag's manifest (replaced when the tag moves) or a reachable manifest by digest. */
  manifest: (ociName: string, reference: string) => `registry/${ociName}/manifests/${reference}`,
  /** A blob (config or layer) a listed entry reaches, by digest (`sha256:<hex>`). */
  blob: (ociName: string, digest: string) => `registry/${ociName}/blobs/${digest}`,
  /** `{"name","tags"}` with every listed tag: `tags/list` without `n` or `last`. */
  tagList: (ociName: string) => `registry/${ociName}/tags/list`,
  /** One-tag pages for `n`/`last` requests: the first tag, and the tag after each listed tag. */
  firstTagPage: (ociName: string) => `registry/${ociName}/tags/page/first`,
  tagPageAfter: (ociName: string, tag: string) => `registry/${ociName}/tags/page/after/${tag}`,
  /** The body CloudFront answers a missing object with (404, a registry error document). */
  notFound: 'errors/not-found.json',
} as const;

/**
 * User metadata on `registry/` objects (`x-amz-meta-<name>` in S3): the manifest or blob digest
 * (sent as `Docker-Content-Digest`) and, on a tag page, the `last` of the next page.
 */
export const registryMetadata = {
  digest: 'docker-content-digest',
  nextLast: 'next-last',
} as const;
