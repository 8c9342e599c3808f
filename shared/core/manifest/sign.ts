/**
 * Signing a manifest: JCS payload → DSSE PAE → Signer.sign, which signs SHA-256 of the PAE
 * (node:crypto with a local key, or KMS with MessageType DIGEST). The result is checked against
 * the signer's own public key before it is returned, so a misconfigured key fails at publish
 * time, not on every agent.
 */
import { verify as cryptoVerify } from 'node:crypto';
import { type DsseEnvelope, MANIFEST_PAYLOAD_TYPE, type ManifestPayload } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import type { Signer } from '../ports.ts';
import { encodeBase64 } from './base64.ts';
import { pae, serializeEnvelope } from './dsse.ts';
import { canonicalizeToBytes } from './jcs.ts';
import { trustedKeyFrom } from './keys.ts';
import { validatePayload } from './payload.ts';

export interface SignedManifest {
  envelope: DsseEnvelope;
  /** The envelope as stored (`manifests/<version>.json`, `manifests/latest.json`). */
  bytes: Uint8Array;
  /** The JCS payload that was signed. */
  payloadBytes: Uint8Array;
}

export function signManifest(payload: ManifestPayload, signer: Signer): Promise<SignedManifest> {
  return signPayload(MANIFEST_PAYLOAD_TYPE, validatePayload(payload), signer);
}

/** Signs any checked payload object: JCS bytes in a DSSE envelope of `payloadType`. */
export async function signPayload(
  payloadType: string,
  checked: unknown,
  signer: Signer,
): Promise<SignedManifest> {
  const payloadBytes = canonicalizeToBytes(checked);
  const message = pae(payloadType, payloadBytes);
  let key: ReturnType<typeof trustedKeyFrom>;
  let sig: Uint8Array;
  try {
    key = trustedKeyFrom(await signer.publicKeySpki());
    sig = await signer.sign(message);
  } catch (err) {
    throw new WasmMirrorError('SIGNING_FAILURE', `signing the manifest failed: ${String(err)}`, {
      cause: err,
    });
  }
  if (!cryptoVerify('sha256', message, key.publicKey, sig)) {
    throw new WasmMirrorError(
      'SIGNING_FAILURE',
      "the signer's signature does not verify with its own public key",
    );
  }
  const envelope: DsseEnvelope = {
    payload: encodeBase64(payloadBytes),
    payloadType,
    signatures: [{ keyid: key.keyid, sig: encodeBase64(sig) }],
  };
  return { envelope, bytes: serializeEnvelope(envelope), payloadBytes };
}
