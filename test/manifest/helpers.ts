/** Builders for valid and deliberately broken manifests, shared by the manifest and agent suites. */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import {
  MANIFEST_PAYLOAD_TYPE,
  type ManifestModule,
  type ManifestPayload,
} from '../../shared/core/domain.ts';
import {
  buildPayload,
  canonicalizeToBytes,
  encodeBase64,
  pae,
  trustedKeyFrom,
} from '../../shared/core/manifest/index.ts';

export const T0 = new Date('2026-01-10T12:00:00.000Z');

export function newSigner(): LocalKeySigner {
  return new LocalKeySigner(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
}

export async function trusted(signer: LocalKeySigner, validity: { notBefore?: Date; notAfter?: Date } = {}) {
  return trustedKeyFrom(await signer.publicKeySpki(), validity);
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function moduleEntry(name: string, bytes: Uint8Array, tag = '1.0.0'): ManifestModule {
  return {
    name,
    tag,
    ociDigest: `sha256:${sha256Hex(`oci:${name}:${tag}`)}`,
    sha256: sha256Hex(bytes),
    size: bytes.length,
    format: 'wasm-artifact',
    abi: 'proxy_abi_version_0_2_1',
    mirroredAt: '2026-01-10T11:59:58.000Z',
  };
}

export function payloadOf(
  modules: ManifestModule[],
  overrides: { mirror?: string; version?: number; issuedAt?: Date; ttlMs?: number } = {},
): ManifestPayload {
  return buildPayload({
    mirror: overrides.mirror ?? 'prod-mesh',
    version: overrides.version ?? 42,
    issuedAt: overrides.issuedAt ?? T0,
    ttlMs: overrides.ttlMs ?? 48 * 3600 * 1000,
    modules,
  });
}

/** Signs arbitrary payload bytes (canonical or not) the way the publisher would, for crafted attacks. */
export async function signRaw(
  payloadBytes: Uint8Array,
  signer: LocalKeySigner,
  opts: { payloadType?: string; keyid?: string } = {},
): Promise<{ payload: string; payloadType: string; signatures: { keyid: string; sig: string }[] }> {
  const payloadType = opts.payloadType ?? MANIFEST_PAYLOAD_TYPE;
  const sig = await signer.sign(pae(payloadType, payloadBytes));
  return {
    payload: encodeBase64(payloadBytes),
    payloadType,
    signatures: [{ keyid: opts.keyid ?? (await signer.keyId()), sig: encodeBase64(sig) }],
  };
}

export function jsonBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value));
}

export function canonicalBytes(value: unknown): Uint8Array {
  return canonicalizeToBytes(value);
}
