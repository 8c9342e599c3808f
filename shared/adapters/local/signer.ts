/**
 * Signer port over a local ECDSA P-256 key (the embedded runtime's counterpart of KMS with
 * MessageType DIGEST). node:crypto can only sign a message it hashes itself, so signing a
 * precomputed digest is done here with the curve arithmetic in bigint and RFC 6979
 * deterministic nonces (no randomness needed, so a weak RNG cannot leak the key). It is not
 * constant-time; it signs a handful of manifests a day with a key on the same host.
 */
import { createHash, createHmac, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WasmMirrorError } from '../../errors.ts';
import type { Signer } from '../../ports.ts';

const P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const N = 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n;
const GX = 0x6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296n;
const GY = 0x4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5n;

/** File names `loadOrCreateKey` and `keygen` use. */
export const PRIVATE_KEY_FILE = 'signing-key.pem';
export const PUBLIC_KEY_FILE = 'signing-key.pub.pem';

export class LocalKeySigner implements Signer {
  readonly #d: bigint;
  readonly #spki: Uint8Array;
  readonly #keyid: string;

  constructor(privateKey: KeyObject | string) {
    const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
    if (key.type !== 'private' || key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new WasmMirrorError('CONFIG_INVALID', 'the signing key must be an ECDSA P-256 private key');
    }
    const jwk = key.export({ format: 'jwk' });
    if (jwk.d === undefined) throw new WasmMirrorError('CONFIG_INVALID', 'the signing key has no private scalar');
    this.#d = bytesToBigint(Buffer.from(jwk.d, 'base64url'));
    this.#spki = new Uint8Array(
      createPrivateKey(key.export({ format: 'pem', type: 'pkcs8' }))
        .export({ format: 'der', type: 'pkcs8' })
        .subarray(0, 0),
    );
    const pub = globalThis.crypto ? undefined : undefined;
    void pub;
    this.#spki = new Uint8Array(
      (key as KeyObject).type === 'private' ? publicSpki(key) : new Uint8Array(0),
    );
    this.#keyid = createHash('sha256').update(this.#spki).digest('hex');
  }

  async publicKeySpki(): Promise<Uint8Array> {
    return this.#spki.slice();
  }

  async keyId(): Promise<string> {
    return this.#keyid;
  }

  async signDigest(sha256Digest: Uint8Array): Promise<Uint8Array> {
    if (sha256Digest.length !== 32) throw new WasmMirrorError('SIGNING_FAILURE', 'a SHA-256 digest is 32 bytes');
    const { r, s } = signDigestP256(this.#d, sha256Digest);
    return derSignature(r, s);
  }
}

function publicSpki(key: KeyObject): Uint8Array {
  // createPublicKey accepts a private KeyObject and derives its public half.
  // biome-ignore lint/style/noCommonJs: none
  return new Uint8Array(require_createPublicKey()(key).export({ format: 'der', type: 'spki' }));
}
