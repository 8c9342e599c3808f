/**
 * Signer port over a local ECDSA P-256 key (the embedded runtime's counterpart of KMS with
 * MessageType DIGEST). node:crypto can only sign a message it hashes itself, so signing a
 * precomputed digest is done here with the curve arithmetic in bigint and RFC 6979
 * deterministic nonces (no randomness needed, so a weak RNG cannot leak the key). It is not
 * constant-time; it signs a handful of manifests a day with a key on the same host.
 */
import {
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
} from 'node:crypto';
import { access, link, mkdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WasmMirrorError } from '../../core/errors.ts';
import type { Signer } from '../../core/ports.ts';
import { writeNewFile } from '../../platform/files.ts';

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
    if (
      key.type !== 'private' ||
      key.asymmetricKeyType !== 'ec' ||
      key.asymmetricKeyDetails?.namedCurve !== 'prime256v1'
    ) {
      throw new WasmMirrorError('CONFIG_INVALID', 'the signing key must be an ECDSA P-256 private key');
    }
    const jwk = key.export({ format: 'jwk' });
    if (jwk.d === undefined)
      throw new WasmMirrorError('CONFIG_INVALID', 'the signing key has no private scalar');
    this.#d = bytesToBigint(Buffer.from(jwk.d, 'base64url'));
    this.#spki = new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }));
    this.#keyid = createHash('sha256').update(this.#spki).digest('hex');
  }

  async publicKeySpki(): Promise<Uint8Array> {
    return this.#spki.slice();
  }

  async keyId(): Promise<string> {
    return this.#keyid;
  }

  async signDigest(sha256Digest: Uint8Array): Promise<Uint8Array> {
    if (sha256Digest.length !== 32)
      throw new WasmMirrorError('SIGNING_FAILURE', 'a SHA-256 digest is 32 bytes');
    const { r, s } = signDigestP256(this.#d, sha256Digest);
    return derSignature(r, s);
  }
}

/** A fresh P-256 key pair as PEM (PKCS#8 private, SPKI public). */
export function generateKeyPairPem(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicKeyPem: publicKey.export({ format: 'pem', type: 'spki' }).toString(),
  };
}

/**
 * Loads `<dir>/signing-key.pem`, creating it on first start: written (mode 0600) and flushed
 * under a temporary name, then linked into place, which fails if the key exists. So two
 * processes starting together agree on one key and neither can read a half-written file. The
 * public half is written beside it (and rewritten if missing).
 */
export async function loadOrCreateKey(dir: string): Promise<LocalKeySigner> {
  const file = join(dir, PRIVATE_KEY_FILE);
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    if (!(await exists(file))) {
      const tmp = join(dir, `.${PRIVATE_KEY_FILE}.${randomUUID()}`);
      try {
        await writeNewFile(tmp, generateKeyPairPem().privateKeyPem, { mode: 0o600, exactMode: true });
        await link(tmp, file).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
      } finally {
        await unlink(tmp).catch(() => {});
      }
    }
  } catch (err) {
    throw new WasmMirrorError('CONFIG_INVALID', `cannot create the signing key ${file}: ${String(err)}`, {
      cause: err,
    });
  }
  const signer = await loadKeyFile(file);
  const pubFile = join(dir, PUBLIC_KEY_FILE);
  if (!(await exists(pubFile))) {
    const pem = createPublicKey({
      key: Buffer.from(await signer.publicKeySpki()),
      format: 'der',
      type: 'spki',
    });
    await writeFile(pubFile, pem.export({ format: 'pem', type: 'spki' }), { mode: 0o644 });
  }
  return signer;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export async function loadKeyFile(file: string): Promise<LocalKeySigner> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
    const info = await stat(file);
    if ((info.mode & 0o077) !== 0 && process.platform !== 'win32') {
      throw new WasmMirrorError(
        'CONFIG_INVALID',
        `signing key ${file} is readable by group or others (chmod 600 it)`,
      );
    }
  } catch (err) {
    if (err instanceof WasmMirrorError) throw err;
    throw new WasmMirrorError('CONFIG_INVALID', `cannot read the signing key ${file}: ${String(err)}`, {
      cause: err,
    });
  }
  try {
    return new LocalKeySigner(pem);
  } catch (err) {
    if (err instanceof WasmMirrorError) throw err;
    throw new WasmMirrorError('CONFIG_INVALID', `signing key ${file} is not a PEM private key`, {
      cause: err,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// ECDSA P-256 over a digest (FIPS 186-4 section 6.4, RFC 6979 section 3.2 nonces).

export function signDigestP256(d: bigint, digest: Uint8Array): { r: bigint; s: bigint } {
  if (d <= 0n || d >= N) throw new WasmMirrorError('SIGNING_FAILURE', 'private scalar out of range');
  const e = bytesToBigint(digest) % N; // 256-bit digest, 256-bit order: bits2int is the identity
  const x = bigintToBytes(d);
  const h1 = bigintToBytes(e);
  let v: Buffer = Buffer.alloc(32, 1);
  let k: Buffer = Buffer.alloc(32, 0);
  const hmac = (key: Buffer, ...parts: Uint8Array[]) => {
    const h = createHmac('sha256', key);
    for (const p of parts) h.update(p);
    return h.digest();
  };
  k = hmac(k, v, Uint8Array.of(0), x, h1);
  v = hmac(k, v);
  k = hmac(k, v, Uint8Array.of(1), x, h1);
  v = hmac(k, v);
  for (;;) {
    v = hmac(k, v);
    const nonce = bytesToBigint(v);
    if (nonce >= 1n && nonce < N) {
      const point = toAffine(mulG(nonce));
      const r = point.x % N;
      if (r !== 0n) {
        const s = (modInv(nonce, N) * ((e + r * d) % N)) % N;
        if (s !== 0n) return { r, s };
      }
    }
    k = hmac(k, v, Uint8Array.of(0));
    v = hmac(k, v);
  }
}

type Jacobian = { x: bigint; y: bigint; z: bigint };
const INFINITY: Jacobian = { x: 0n, y: 1n, z: 0n };

const mod = (a: bigint, m: bigint = P) => {
  const r = a % m;
  return r < 0n ? r + m : r;
};

function modPow(base: bigint, exp: bigint, m: bigint): bigint {
  let result = 1n;
  let b = mod(base, m);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % m;
    b = (b * b) % m;
    e >>= 1n;
  }
  return result;
}

// Both moduli are prime, so Fermat's little theorem gives the inverse.
const modInv = (a: bigint, m: bigint) => modPow(a, m - 2n, m);

function double(p: Jacobian): Jacobian {
  if (p.z === 0n || p.y === 0n) return INFINITY;
  // dbl-2001-b for a = -3
  const delta = mod(p.z * p.z);
  const gamma = mod(p.y * p.y);
  const beta = mod(p.x * gamma);
  const alpha = mod(3n * (p.x - delta) * (p.x + delta));
  const x3 = mod(alpha * alpha - 8n * beta);
  const z3 = mod((p.y + p.z) ** 2n - gamma - delta);
  const y3 = mod(alpha * (4n * beta - x3) - 8n * gamma * gamma);
  return { x: x3, y: y3, z: z3 };
}

function add(p: Jacobian, q: Jacobian): Jacobian {
  if (p.z === 0n) return q;
  if (q.z === 0n) return p;
  const z1z1 = mod(p.z * p.z);
  const z2z2 = mod(q.z * q.z);
  const u1 = mod(p.x * z2z2);
  const u2 = mod(q.x * z1z1);
  const s1 = mod(p.y * q.z * z2z2);
  const s2 = mod(q.y * p.z * z1z1);
  if (u1 === u2) return s1 === s2 ? double(p) : INFINITY;
  const h = mod(u2 - u1);
  const r = mod(s2 - s1);
  const h2 = mod(h * h);
  const h3 = mod(h2 * h);
  const x3 = mod(r * r - h3 - 2n * u1 * h2);
  const y3 = mod(r * (u1 * h2 - x3) - s1 * h3);
  const z3 = mod(p.z * q.z * h);
  return { x: x3, y: y3, z: z3 };
}

function mulG(k: bigint): Jacobian {
  let result = INFINITY;
  let addend: Jacobian = { x: GX, y: GY, z: 1n };
  let e = k;
  while (e > 0n) {
    if (e & 1n) result = add(result, addend);
    addend = double(addend);
    e >>= 1n;
  }
  return result;
}

function toAffine(p: Jacobian): { x: bigint; y: bigint } {
  const zInv = modInv(p.z, P);
  const zInv2 = mod(zInv * zInv);
  return { x: mod(p.x * zInv2), y: mod(p.y * zInv2 * zInv) };
}

function bytesToBigint(bytes: Uint8Array): bigint {
  return bytes.length === 0 ? 0n : BigInt(`0x${Buffer.from(bytes).toString('hex')}`);
}

function bigintToBytes(n: bigint): Uint8Array {
  return Buffer.from(n.toString(16).padStart(64, '0'), 'hex');
}

function derInteger(n: bigint): Uint8Array {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let bytes = Buffer.from(hex, 'hex');
  if ((bytes[0] ?? 0) & 0x80) bytes = Buffer.concat([Buffer.of(0), bytes]);
  return Buffer.concat([Buffer.of(0x02, bytes.length), bytes]);
}

/** ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (at most 72 bytes, short-form lengths). */
export function derSignature(r: bigint, s: bigint): Uint8Array {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  return new Uint8Array(Buffer.concat([Buffer.of(0x30, body.length), body]));
}
