/**
 * The domain's vocabulary: what a webhook turns into (a MirrorJob), what a mirror produces (a
 * ModuleRecord) and what the publisher signs (ManifestPayload). Plain data, JSON-serialisable,
 * so the same objects travel through SQS and the embedded queue.
 */
import { WasmMirrorError } from './errors.ts';

/**
 * How the module was packaged in the registry. Istio's own `oci://` fetcher loads `compat-image`
 * and `wasm-artifact`; the others are the mirror's extensions (`istioLoadsFormat` in
 * wasm/formats.ts tells them apart).
 */
export type WasmFormat = 'wasm-artifact' | 'compat-image' | 'cncf-wasm' | 'wasm-artifact-1layer';

export type WasmKind = 'module' | 'component';

/** A request to mirror one reference. Built by webhook parsers, the reconcile loop and the CLI. */
export interface MirrorJob {
  /** Config source id the job came from; decides the registry host, credentials and allow-list. */
  sourceId: string;
  /** Registry host[:port] exactly as in the source's config, never taken from a webhook payload. */
  registry: string;
  /** Repository path, e.g. `acme/basic-auth`. */
  repository: string;
  /** Tag pushed, when the sender told us. */
  tag?: string;
  /** Manifest digest (`sha256:<hex>`), when the sender told us; otherwise resolved from the tag. */
  digest?: string;
  /** Sender's delivery or event id, for dedupe and logs. */
  deliveryId?: string;
  /** ISO time the job was created. */
  receivedAt: string;
}

/** What a pull establishes about one module; a record and a manifest entry carry the same facts. */
export interface ModuleFacts {
  /** OCI manifest digest the module was resolved from. */
  ociDigest: string;
  /** Lowercase hex sha256 of the module bytes. */
  sha256: string;
  size: number;
  format: WasmFormat;
  kind: WasmKind;
  /** proxy-wasm ABI export name, e.g. `proxy_abi_version_0_2_1`, when present. */
  abi?: string;
}

/** The result of a successful mirror: what the publisher lists. */
export interface ModuleRecord extends ModuleFacts {
  /** `<registry>/<repository>`, the name agents select by. */
  name: string;
  /** Tag, or the empty string for a digest-only push. */
  tag: string;
  mirroredAt: string;
  /**
   * When the registry last confirmed that `tag` pointed at `ociDigest` (ISO, milliseconds): the
   * publisher keeps the newest observation of each tag, so a late or re-driven record about an
   * older one changes nothing. Absent in records queued by earlier versions.
   */
  observedAt?: string;
}

/** Manifest v1 payload: one signed document listing every module (v2: docs/manifest-v2.md). */
export interface ManifestPayload {
  type: 'wasm-mirror.manifest/v1';
  mirror: string;
  version: number;
  issuedAt: string;
  expiresAt: string;
  modules: ManifestModule[];
}

/** A manifest entry: a record as signed (`kind` is optional in documents written before it existed). */
export interface ManifestModule extends Omit<ModuleRecord, 'kind' | 'observedAt'> {
  kind?: WasmKind;
}

export const MANIFEST_PAYLOAD_TYPE = 'application/vnd.wasm-mirror.manifest.v1+json';
export const MANIFEST_TYPE = 'wasm-mirror.manifest/v1';

/** DSSE v1 envelope as stored in `manifests/<version>.json`. */
export interface DsseEnvelope {
  payload: string;
  payloadType: string;
  signatures: { keyid: string; sig: string }[];
}

export { storageKeys } from './storage-keys.ts';

export const MAX_OBJECT_KEY_BYTES = 1024;

/**
 * Throws INVALID_KEY unless `key` is a safe relative path: S3-compatible, no traversal. Every
 * ObjectStore checks keys with this, so a key valid in one runtime is valid in all of them.
 */
export function validateObjectKey(key: string): void {
  const fail = (why: string): never => {
    throw new WasmMirrorError('INVALID_KEY', `invalid object key ${JSON.stringify(key)}: ${why}`);
  };
  if (typeof key !== 'string' || key.length === 0) fail('empty');
  if (Buffer.byteLength(key) > MAX_OBJECT_KEY_BYTES) fail(`longer than ${MAX_OBJECT_KEY_BYTES} bytes`);
  if (key.includes('\0')) fail('contains NUL');
  if (key.includes('\\')) fail('contains a backslash');
  if (key.startsWith('/')) fail('absolute path');
  for (const segment of key.split('/')) {
    if (segment === '') fail('empty path segment');
    if (segment === '.' || segment === '..') fail(`'${segment}' segment`);
  }
}

export const SHA256_HEX = /^[a-f0-9]{64}$/;
export const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;
