/**
 * Ports: the only ways the core touches the outside world. Each runtime (embedded, Lambda) wires
 * adapters for them in its composition root. Adapters declare `satisfies <Port>` so drift fails
 * to compile. Bytes that cross a port with a known digest are verified on the way.
 */
import type { ModuleFacts, ModuleRecord } from './domain.ts';

// ---------------------------------------------------------------------------------------------
// Object storage (S3 bucket or the embedded data directory), in the layout the README describes.

export interface ObjectInfo {
  key: string;
  size: number;
  /** Strong validator for conditional requests, quoted as HTTP wants it. */
  etag: string;
  contentType?: string;
  lastModified?: Date;
}

/** Bytes in memory (manifests, keys) or a staged file (modules, streamed by the adapter). */
export type ObjectBody = Uint8Array | { path: string; size: number };

export interface PutOptions {
  contentType: string;
  /** Lowercase hex sha256 of the body: the store checks it and refuses a mismatch (DIGEST_MISMATCH). */
  sha256?: string;
  cacheControl?: string;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive; to the end when absent. */
  end?: number;
}

export interface ObjectStream {
  info: ObjectInfo;
  body: AsyncIterable<Uint8Array>;
}

export interface ObjectStore {
  head(key: string): Promise<ObjectInfo | undefined>;
  /** The whole object; SIZE_EXCEEDED if it is larger than maxBytes. */
  getBytes(key: string, maxBytes: number): Promise<{ info: ObjectInfo; bytes: Uint8Array } | undefined>;
  getStream(key: string, range?: ByteRange): Promise<ObjectStream | undefined>;
  /** Create or replace, atomically: readers see the old object or the new one, never a part. */
  put(key: string, body: ObjectBody, options: PutOptions): Promise<ObjectInfo>;
  /** Create-only: ALREADY_EXISTS if the key exists (S3 `If-None-Match: *`, O_EXCL / link on disk). */
  create(key: string, body: ObjectBody, options: PutOptions): Promise<ObjectInfo>;
  /** Keys under a prefix, in lexicographic order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes an object; removing one that is not there is not an error (retention, GC). */
  delete(key: string): Promise<void>;
}

/**
 * Writes the registry view (`registry/…`, see storage-keys.ts) with the headers a CDN serves each
 * object with. Only where a CDN serves `/v2/` from storage (AWS: S3 user metadata, server-side
 * copies); the embedded server answers `/v2/` from the kept content directly and has none.
 */
export interface RegistryObjectWriter {
  /** Create or replace `key` with `bytes`, or with a server-side copy of the object `copyFrom`. */
  write(
    key: string,
    source: { bytes: Uint8Array } | { copyFrom: string },
    options: RegistryObjectOptions,
  ): Promise<void>;
}

export interface RegistryObjectOptions {
  contentType: string;
  cacheControl: string;
  /** User metadata (`x-amz-meta-<name>`): names from `registryMetadata`, ASCII values. */
  metadata: Readonly<Record<string, string>>;
}

// ---------------------------------------------------------------------------------------------
// Queues. Producers send; each runtime drives consumers (SQS event source mapping or the
// embedded poller) and calls the same handler. A handler that throws gets the message retried
// with backoff, and after maxAttempts it lands in the dead-letter area.

export interface SendOptions {
  /** Deduplication id (SQS FIFO MessageDeduplicationId; embedded: same id within the window is dropped). */
  dedupeId?: string;
  delaySeconds?: number;
}

export interface QueueProducer<T> {
  send(body: T, options?: SendOptions): Promise<void>;
}

export interface DeliveryMeta {
  messageId: string;
  /** 1 on first delivery. */
  attempt: number;
}

export type MessageHandler<T> = (body: T, meta: DeliveryMeta) => Promise<void>;

/** Messages on the publish queue (FIFO, one group: publishes are serialised). */
export type PublishRequest =
  | { kind: 'record'; record: ModuleRecord }
  | { kind: 'resign'; reason: 'schedule' | 'startup' | 'manual' };

// ---------------------------------------------------------------------------------------------
// Signing (a local P-256 key through node:crypto, or KMS ECC_NIST_P256 with MessageType DIGEST).

export interface Signer {
  /** DER SubjectPublicKeyInfo of the signing key. */
  publicKeySpki(): Promise<Uint8Array>;
  /** Lowercase hex sha256 of the SPKI DER (the DSSE keyid). */
  keyId(): Promise<string>;
  /**
   * ECDSA P-256 signature over SHA-256 of `message`, DER-encoded (what `openssl dgst -sha256
   * -verify` checks). The adapter hashes; callers pass the message itself.
   */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

// ---------------------------------------------------------------------------------------------
// Registries.

export interface RegistryCredentials {
  username: string;
  password: string;
}

export interface RegistryTarget {
  /** host[:port], from config. */
  registry: string;
  repository: string;
  /** Tag or `sha256:` digest. */
  reference: string;
  /** Plain http allowed for this registry. */
  insecure: boolean;
  credentials?: RegistryCredentials;
}

export interface PullOptions {
  signal?: AbortSignal;
  /** Module size cap in bytes (default 256 MiB). */
  maxModuleBytes?: number;
  onProgress?: (receivedBytes: number, totalBytes: number | undefined) => void;
  /**
   * Keep the upstream content the pull verifies, so the mirror can serve it as a registry: each
   * blob is written to `stagePath(digest)` while it streams (nothing is downloaded twice), and
   * the result's `content` lists it. The caller owns those files once the pull has returned.
   */
  keepContent?: { stagePath: (digest: string) => string };
}

/** One upstream manifest or blob a pull verified against its digest, byte for byte as served. */
export interface VerifiedContent {
  /** `sha256:<hex>`. */
  digest: string;
  mediaType: string;
  size: number;
  /** A manifest or index (fetched by clients as a manifest), or a config or layer blob. */
  manifest: boolean;
  /** Manifest bytes, or the staged file a blob was streamed into. */
  body: ObjectBody;
}

/** What a pull establishes; the mirror adds name, tag and time to make a ModuleRecord. */
export interface PulledModule extends ModuleFacts {
  /**
   * With `keepContent`: the reference's manifest, the children an index resolved to, then the
   * image's config and every layer, each digest once.
   */
  content?: VerifiedContent[];
}

export interface WasmPuller {
  /** Resolves, pulls, verifies and validates one module, writing exactly its bytes to `destPath`. */
  pullToFile(target: RegistryTarget, destPath: string, options?: PullOptions): Promise<PulledModule>;
  /** Manifest digest a tag currently points to (HEAD, falling back to GET). */
  resolveDigest(target: RegistryTarget, options?: { signal?: AbortSignal }): Promise<string>;
  /** Tags of a repository (for reconcile), following pagination. */
  listTags(target: Omit<RegistryTarget, 'reference'>, options?: { signal?: AbortSignal }): Promise<string[]>;
}

// ---------------------------------------------------------------------------------------------
// Secrets (environment variables embedded, Secrets Manager in AWS), clock, telemetry.

export interface SecretSource {
  /** The secret's value, or undefined if it is not set. Never logged. */
  get(name: string): Promise<string | undefined>;
}

export interface Clock {
  now(): Date;
}

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(message: string, fields?: Fields): void;
  info(message: string, fields?: Fields): void;
  warn(message: string, fields?: Fields): void;
  error(message: string, fields?: Fields): void;
}

export type Labels = Record<string, string>;

export interface Metrics {
  /** Adds to a counter. Names are snake_case without a prefix, e.g. `webhooks_total`. */
  count(name: string, labels?: Labels, value?: number): void;
  gauge(name: string, value: number, labels?: Labels): void;
}

export const systemClock: Clock = { now: () => new Date() };

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

export const noMetrics: Metrics = { count() {}, gauge() {} };
