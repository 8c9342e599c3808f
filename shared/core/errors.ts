/**
 * One error type for the whole core. `code` is stable and documented: CLIs print it, HTTP entry
 * points map it to a status, metrics count it. Messages are for humans and may change.
 */
export const ERROR_CODES = [
  // usage and configuration
  'USAGE',
  'CONFIG_INVALID',
  // references and registries
  'INVALID_REFERENCE',
  'REGISTRY_NOT_ALLOWED',
  'INSECURE_NOT_ALLOWED',
  'UNAUTHORIZED',
  'DENIED',
  'MANIFEST_UNKNOWN',
  'BLOB_UNKNOWN',
  'NAME_UNKNOWN',
  'TOO_MANY_REQUESTS',
  'REGISTRY_UNAVAILABLE',
  'REGISTRY_PROTOCOL',
  'FORBIDDEN_ADDRESS',
  'TIMEOUT',
  // content checks
  'DIGEST_MISMATCH',
  'SIZE_EXCEEDED',
  'LENGTH_MISMATCH',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNSUPPORTED_FORMAT',
  'NOT_WASM',
  'INVALID_WASM',
  'UNSAFE_ARCHIVE',
  'DECOMPRESSION_BOMB',
  // storage and queues
  'ALREADY_EXISTS',
  'NOT_FOUND',
  'STORAGE_FAILURE',
  'INVALID_KEY',
  'RANGE_NOT_SATISFIABLE',
  'QUEUE_FAILURE',
  'SIGNING_FAILURE',
  // another process publishes for this data directory and did not finish in time
  'PUBLISHER_BUSY',
  // the embedded signing key (a lost or swapped key stops the mirror instead of being replaced)
  'KEY_MISSING',
  'KEY_MISMATCH',
  // webhooks
  'WEBHOOK_UNAUTHENTICATED',
  'WEBHOOK_TOO_LARGE',
  'WEBHOOK_MALFORMED',
  'WEBHOOK_UNKNOWN_SOURCE',
  'WEBHOOK_RATE_LIMITED',
  // manifest verification (agent, verify)
  'MANIFEST_TOO_LARGE',
  'ENVELOPE_MALFORMED',
  'PAYLOAD_TYPE_MISMATCH',
  'NO_SIGNATURES',
  'UNKNOWN_KEY',
  'KEY_NOT_VALID',
  'SIGNATURE_INVALID',
  'SCHEMA_ERROR',
  'WRONG_MIRROR',
  'MANIFEST_EXPIRED',
  // manifest v2 nodes reached from a verified index
  'NODE_HASH_MISMATCH',
  'NODE_INVALID',
  'NODE_MISSING',
  'MANIFEST_FROM_FUTURE',
  'ROLLBACK',
  'VERSION_CONFLICT',
  'HASH_MISMATCH',
  'STATE_CORRUPT',
  'TRUSTED_KEYS_INVALID',
  'MIRROR_UNAVAILABLE',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface WasmMirrorErrorOptions {
  cause?: unknown;
  /** A failure worth retrying (outage, throttling, timeout); permanent failures are recorded once. */
  retryable?: boolean;
  /** Seconds the peer asked us to wait (Retry-After), when known. */
  retryAfterSeconds?: number;
  /** Extra structured context for logs; never secrets. */
  details?: Record<string, unknown>;
}

export class WasmMirrorError extends Error {
  override readonly name: string = 'WasmMirrorError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly retryAfterSeconds: number | undefined;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: WasmMirrorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.details = options.details;
  }
}

export function isWasmMirrorError(err: unknown, code?: ErrorCode): err is WasmMirrorError {
  return err instanceof WasmMirrorError && (code === undefined || err.code === code);
}

/** Wraps anything thrown into a WasmMirrorError, keeping the original as `cause`. */
export function toWasmMirrorError(err: unknown, fallback: ErrorCode = 'INTERNAL'): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WasmMirrorError(fallback, message, { cause: err });
}

/** errno codes that always mean the local disk or the process's file table, never content or a peer. */
const STORAGE_ERRNO_CODES = new Set([
  'ENOSPC',
  'EDQUOT',
  'EIO',
  'EMFILE',
  'ENFILE',
  'EROFS',
  'EFBIG',
  'ESTALE',
]);

/**
 * Whether `err` is a filesystem failure: a disk that is full, read-only or failing, no free file
 * descriptors, or any errno error Node's fs module raised about a path.
 */
export function isFilesystemError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { code, path, syscall } = err as { code?: unknown; path?: unknown; syscall?: unknown };
  if (typeof code !== 'string') return false;
  if (STORAGE_ERRNO_CODES.has(code)) return true;
  return typeof path === 'string' && typeof syscall === 'string' && /^E[A-Z0-9]+$/.test(code);
}

/**
 * A filesystem failure as a retryable STORAGE_FAILURE: once space or descriptors are freed, the
 * same work succeeds, so it must be retried (and dead-lettered if it never does), not dropped.
 * A WasmMirrorError passes through.
 */
export function storageFailure(action: string, err: unknown): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WasmMirrorError('STORAGE_FAILURE', `${action}: ${message}`, { cause: err, retryable: true });
}
