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
export { type SignedManifest, signManifest, signPayload } from './sign.ts';
export {
  BIN_TYPE,
  type BinNode,
  binOf,
  buildTree,
  decodeNode,
  depthFor,
  encodeNode,
  envelopeWithNodes,
  FANOUT,
  INDEX_PAYLOAD_TYPE,
  INDEX_TYPE,
  type IndexPayload,
  indexKind,
  inlineNodes,
  MAX_INDEX_BYTES,
  MAX_INLINE_NODE_BYTES,
  type NodeLoader,
  nameHash,
  PAGE_TYPE,
  type PageNode,
  type Pin,
  readBin,
  TreeEditor,
  type TreeNode,
  v2Keys,
  validateIndexPayload,
  verifyIndex,
  walkEntries,
  withInlineNodes,
} from './v2.ts';
export {
  DEFAULT_MAX_MANIFEST_BYTES,
  DEFAULT_MAX_SKEW_MS,
  type LastAccepted,
  type SignedKind,
  type SignedPayload,
  type VerifiedDocument,
  type VerifiedManifest,
  type VerifyOptions,
  verifyManifest,
  verifySigned,
} from './verify.ts';
