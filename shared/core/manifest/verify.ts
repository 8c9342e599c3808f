/**
 * Manifest verification, in a fixed order and fail-closed: size, strict envelope,
 * payloadType, a signature by a trusted and currently valid key over the PAE, the schema of the
 * verified bytes (and nothing else), mirror name, time window, rollback. Each step has its own
 * error code so operators can tell an attack from a stale mirror.
 */
import { createHash, verify as cryptoVerify } from 'node:crypto';
import { type DsseEnvelope, MANIFEST_PAYLOAD_TYPE, type ManifestPayload } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { decodeUtf8Strict, parseStrictJson } from '../strict-json.ts';
import { pae, parseEnvelope } from './dsse.ts';
import { canonicalize } from './jcs.ts';
import { isKeyValidAt, type TrustedKey } from './keys.ts';
import { parseIsoTime, validatePayload } from './payload.ts';

export const DEFAULT_MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_SKEW_MS = 5 * 60 * 1000;
const MAX_PAYLOAD_DEPTH = 8;

export interface LastAccepted {
  version: number;
  /** Lowercase hex sha256 of the accepted payload bytes. */
  payloadSha256: string;
}

export interface VerifyOptions {
  trustedKeys: readonly TrustedKey[];
  /** The mirror's name as pinned by the operator; checked when given. */
  mirrorName?: string;
  now: Date;
  maxBytes?: number;
  /** How far issuedAt may lie ahead of `now` (clock skew), default 5 min. */
  maxSkewMs?: number;
  lastAccepted?: LastAccepted;
}

export type VerifiedManifest = VerifiedDocument<ManifestPayload>;

function fail(
  code: ConstructorParameters<typeof WasmMirrorError>[0],
  message: string,
  cause?: unknown,
): never {
  throw new WasmMirrorError(code, message, { cause });
}

export function verifyManifest(bytes: Uint8Array, opts: VerifyOptions): VerifiedManifest {
  return verifySigned(
    bytes,
    { payloadType: MANIFEST_PAYLOAD_TYPE, validate: validatePayload, what: 'manifest' },
    opts,
  );
}

/** What every signed document (a v1 manifest, a v2 index) carries and is checked for. */
export interface SignedPayload {
  mirror: string;
  version: number;
  issuedAt: string;
  expiresAt: string;
}

export interface SignedKind<T extends SignedPayload> {
  payloadType: string;
  /** Checks a parsed payload and returns it typed; throws SCHEMA_ERROR. */
  validate(value: unknown): T;
  /** For messages: "manifest", "index". */
  what: string;
}

export interface VerifiedDocument<T extends SignedPayload> {
  payload: T;
  /** The signed payload bytes the payload was parsed from. */
  payloadBytes: Uint8Array;
  payloadSha256: string;
  envelope: DsseEnvelope;
  /** The envelope as received (it may carry fields the signature does not cover, such as v2's inline nodes). */
  bytes: Uint8Array;
  /** The trusted key whose signature verified. */
  keyid: string;
}

/**
 * The checks every signed document gets, in order and fail-closed: size, strict envelope,
 * payloadType, a signature by a trusted and currently valid key over the PAE, the schema of the
 * verified bytes in canonical form, mirror name, time window, rollback.
 */
export function verifySigned<T extends SignedPayload>(
  bytes: Uint8Array,
  kind: SignedKind<T>,
  opts: VerifyOptions,
): VerifiedDocument<T> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_MANIFEST_BYTES;
  if (bytes.length > maxBytes)
    fail('MANIFEST_TOO_LARGE', `${kind.what} is ${bytes.length} bytes, the cap is ${maxBytes}`);

  const env = parseEnvelope(bytes);
  if (env.payloadType !== kind.payloadType) {
    fail(
      'PAYLOAD_TYPE_MISMATCH',
      `payloadType is ${JSON.stringify(env.payloadType.slice(0, 200))}, expected ${kind.payloadType}`,
    );
  }
  if (env.signatures.length === 0) fail('NO_SIGNATURES', 'the envelope carries no signatures');

  const keyid = checkSignatures(env.payloadType, env.payload, env.signatures, opts);

  let parsed: unknown;
  let text = '';
  try {
    text = decodeUtf8Strict(env.payload);
    parsed = parseStrictJson(text, { maxDepth: MAX_PAYLOAD_DEPTH });
  } catch (err) {
    fail(
      'SCHEMA_ERROR',
      `${kind.what} payload is not strict JSON: ${err instanceof Error ? err.message : String(err)}`,
      err,
    );
  }
  const payload = kind.validate(parsed);
  // Only canonical (RFC 8785) bytes are accepted: `42.0`, `4.2e1`, reordered keys or extra
  // whitespace never come out of the publisher, and refusing them leaves one byte string per payload.
  if (canonicalize(parsed) !== text)
    fail('SCHEMA_ERROR', `${kind.what} payload is not in canonical (RFC 8785) form`);

  if (opts.mirrorName !== undefined && payload.mirror !== opts.mirrorName) {
    fail('WRONG_MIRROR', `${kind.what} is for mirror "${payload.mirror}", expected "${opts.mirrorName}"`);
  }
  const now = opts.now.getTime();
  const expiresAt = parseIsoTime(payload.expiresAt)!;
  const issuedAt = parseIsoTime(payload.issuedAt)!;
  if (now >= expiresAt)
    fail('MANIFEST_EXPIRED', `${kind.what} version ${payload.version} expired at ${payload.expiresAt}`);
  if (issuedAt > now + (opts.maxSkewMs ?? DEFAULT_MAX_SKEW_MS)) {
    fail('MANIFEST_FROM_FUTURE', `${kind.what} issuedAt ${payload.issuedAt} is ahead of the local clock`);
  }
  const payloadSha256 = createHash('sha256').update(env.payload).digest('hex');
  const last = opts.lastAccepted;
  if (last !== undefined) {
    if (payload.version < last.version) {
      fail(
        'ROLLBACK',
        `${kind.what} version ${payload.version} is older than the accepted version ${last.version}`,
      );
    }
    if (payload.version === last.version && payloadSha256 !== last.payloadSha256) {
      fail(
        'VERSION_CONFLICT',
        `${kind.what} version ${payload.version} differs from the accepted ${kind.what} of that version`,
      );
    }
  }
  return { payload, payloadBytes: env.payload, payloadSha256, envelope: env.envelope, bytes, keyid };
}

/**
 * Returns the keyid of the first signature that verifies under a trusted, valid key. Failure
 * reports the most telling reason: a bad signature under a usable key beats an expired key,
 * which beats an unknown one.
 */
function checkSignatures(
  payloadType: string,
  payload: Uint8Array,
  signatures: readonly { keyid: string; sig: Uint8Array }[],
  opts: VerifyOptions,
): string {
  const message = pae(payloadType, payload);
  let sawInvalidKey: string | undefined;
  let sawBadSignature = false;
  for (const s of signatures) {
    // DSSE keyids are hints; an empty one means "try every trusted key" (bounded by the key count).
    const candidates =
      s.keyid === '' ? opts.trustedKeys : opts.trustedKeys.filter((k) => k.keyid === s.keyid);
    for (const key of candidates) {
      if (!isKeyValidAt(key, opts.now)) {
        sawInvalidKey = key.keyid;
        continue;
      }
      let ok = false;
      try {
        ok = cryptoVerify('sha256', message, key.publicKey, s.sig);
      } catch {
        ok = false; // unparseable DER counts as a bad signature
      }
      if (ok) return key.keyid;
      sawBadSignature = true;
    }
  }
  if (sawBadSignature) fail('SIGNATURE_INVALID', 'no signature verifies under a trusted key');
  if (sawInvalidKey !== undefined) {
    fail('KEY_NOT_VALID', `key ${sawInvalidKey} is trusted but not valid at ${opts.now.toISOString()}`);
  }
  const ids = signatures.map((s) => s.keyid || '(none)').slice(0, 4);
  fail('UNKNOWN_KEY', `no signature is by a trusted key (keyids: ${ids.join(', ')})`);
}
