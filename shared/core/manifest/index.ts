/** The signed manifest: JCS payload, DSSE envelope, trusted keys, signing and verification. */
export { decodeBase64Strict, encodeBase64 } from './base64.ts';
export { MAX_SIGNATURES, type ParsedEnvelope, pae, parseEnvelope, serializeEnvelope } from './dsse.ts';
export { canonicalize, canonicalizeToBytes } from './jcs.ts';
export {
  isKeyValidAt,
  type KeysJsonEntry,
  keyIdOf,
  loadTrustedKeys,
  renderKeysJson,
  spkiToPem,
  type TrustedKey,
  trustedKeyFrom,
} from './keys.ts';
export {
  type BuildPayloadInput,
  buildPayload,
  compareModules,
  DEFAULT_MANIFEST_TTL_MS,
  parseIsoTime,
  toManifestModule,
  validatePayload,
} from './payload.ts';
export { type SignedManifest, signManifest } from './sign.ts';
export {
  DEFAULT_MAX_MANIFEST_BYTES,
  DEFAULT_MAX_SKEW_MS,
  type LastAccepted,
  type VerifiedManifest,
  type VerifyOptions,
  verifyManifest,
} from './verify.ts';
