/**
 * Signer port over a local ECDSA P-256 key, the embedded runtime's counterpart of KMS. Signing
 * is node:crypto's (OpenSSL): it hashes the message with SHA-256 and returns a DER signature.
 *
 * The key lives in the data directory as PEM (PKCS#8, mode 0600) with its public half beside
 * it. Agents pin that key, so a key that went missing or was swapped must stop the mirror
 * instead of being replaced quietly: every manifest signed afterwards would be refused.
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  sign as cryptoSign,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
} from 'node:crypto';
import { access, link, mkdir, readFile, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { WasmMirrorError } from '../../core/errors.ts';
import { parseEnvelope } from '../../core/manifest/index.ts';
import { readNewestSignedBytes } from '../../core/pipeline/state.ts';
import type { ObjectStore, Signer } from '../../core/ports.ts';
import { writeFileAtomic, writeNewFile } from '../../platform/files.ts';

/** File names `loadOrCreateKey` and `keygen` use. */
export const PRIVATE_KEY_FILE = 'signing-key.pem';
export const PUBLIC_KEY_FILE = 'signing-key.pub.pem';

export class LocalKeySigner implements Signer {
  readonly #key: KeyObject;
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
    this.#key = key;
    this.#spki = new Uint8Array(createPublicKey(key).export({ format: 'der', type: 'spki' }));
    this.#keyid = createHash('sha256').update(this.#spki).digest('hex');
  }

  async publicKeySpki(): Promise<Uint8Array> {
    return this.#spki.slice();
  }

  async keyId(): Promise<string> {
    return this.#keyid;
  }

  sign(message: Uint8Array): Promise<Uint8Array> {
    // The callback form runs on libuv's thread pool instead of the event loop.
    return new Promise((resolve, reject) => {
      cryptoSign('sha256', message, { key: this.#key, dsaEncoding: 'der' }, (err, signature) => {
        if (err)
          reject(
            new WasmMirrorError('SIGNING_FAILURE', `local signing failed: ${err.message}`, { cause: err }),
          );
        else resolve(new Uint8Array(signature));
      });
    });
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

export interface LoadKeyOptions {
  /**
   * What the data directory already published: the keyids on its newest manifest (empty when
   * they cannot be read). Absent when nothing was published yet.
   */
  published?: { keyids: readonly string[] };
  /**
   * Sign with a key other than the one that signed the published manifests: a missing key is
   * created, a replaced one accepted, and the public key file rewritten to match.
   */
  rotate?: boolean;
}

/**
 * The keyids that signed the newest signed document in `store` (the v2 index, or v1's manifest on
 * a mirror without one, found as the publisher finds what to build on), or undefined when none
 * was published.
 */
export async function publishedKeyIds(store: ObjectStore): Promise<{ keyids: string[] } | undefined> {
  const newest = await readNewestSignedBytes(store);
  if (newest === undefined) return undefined;
  try {
    return {
      keyids: parseEnvelope(newest)
        .signatures.map((s) => s.keyid)
        .filter((id) => id !== ''),
    };
  } catch {
    // A manifest exists even if its signer cannot be told: a missing key is still refused.
    return { keyids: [] };
  }
}

/**
 * Loads `<dir>/signing-key.pem`, creating it on a first start: written (mode 0600) and flushed
 * under a temporary name, then linked into place, which fails if the key exists. So two
 * processes starting together agree on one key and neither can read a half-written file.
 *
 * Refused unless `rotate` is set: a missing key when manifests were published or a public key
 * file remains (KEY_MISSING); a key that did not sign the published manifests, or a public key
 * file that does not match the private key (KEY_MISMATCH).
 */
export async function loadOrCreateKey(dir: string, options: LoadKeyOptions = {}): Promise<LocalKeySigner> {
  const file = join(dir, PRIVATE_KEY_FILE);
  const pubFile = join(dir, PUBLIC_KEY_FILE);
  const rotate = options.rotate === true;
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new WasmMirrorError('CONFIG_INVALID', `cannot create the key directory ${dir}: ${String(err)}`, {
      cause: err,
    });
  }
  // The public file is looked at first: a process racing this one links the private key
  // before it writes the public one, so seeing the public file implies the private one exists.
  const hadPublicFile = await exists(pubFile);
  if (!(await exists(file))) {
    if (!rotate && (options.published !== undefined || hadPublicFile)) {
      const signedBy = options.published?.keyids.length
        ? ` signed by key ${options.published.keyids.join(', ')}`
        : '';
      const evidence =
        options.published !== undefined
          ? `this data directory has published manifests${signedBy}`
          : `${pubFile} remains from an earlier key`;
      throw new WasmMirrorError(
        'KEY_MISSING',
        `the signing key ${file} is missing, but ${evidence}; a new key would make agents that trust the old one ` +
          'refuse every new manifest. Restore the key file from a backup, or start with --rotate-key ' +
          '(rotateKey) to sign with a new key and give agents the new keys.json',
      );
    }
    await createKeyFile(dir, file);
  }
  const signer = await loadKeyFile(file);
  const keyid = await signer.keyId();
  const signedWith = options.published?.keyids ?? [];
  if (!rotate && signedWith.length > 0 && !signedWith.includes(keyid)) {
    throw new WasmMirrorError(
      'KEY_MISMATCH',
      `the signing key ${file} (keyid ${keyid}) is not the key that signed this data directory's manifests ` +
        `(keyid ${signedWith.join(', ')}); agents that trust that key would refuse every new manifest. ` +
        'Restore the original key file, or start with --rotate-key (rotateKey) to sign with this key from now on',
    );
  }
  await keepPublicKeyInStep(pubFile, file, signer, rotate);
  return signer;
}

async function createKeyFile(dir: string, file: string): Promise<void> {
  const tmp = join(dir, `.${PRIVATE_KEY_FILE}.${randomUUID()}`);
  try {
    await writeNewFile(tmp, generateKeyPairPem().privateKeyPem, { mode: 0o600, exactMode: true });
    await link(tmp, file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
  } catch (err) {
    throw new WasmMirrorError('CONFIG_INVALID', `cannot create the signing key ${file}: ${String(err)}`, {
      cause: err,
    });
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

/** Writes the public half when it is missing; a stale one is refused, or replaced when rotating. */
async function keepPublicKeyInStep(
  pubFile: string,
  file: string,
  signer: LocalKeySigner,
  rotate: boolean,
): Promise<void> {
  const spki = await signer.publicKeySpki();
  let current: string | undefined;
  try {
    current = await readFile(pubFile, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new WasmMirrorError('CONFIG_INVALID', `cannot read the public key ${pubFile}: ${String(err)}`, {
        cause: err,
      });
    }
  }
  if (current !== undefined) {
    if (samePublicKey(current, spki)) return;
    if (!rotate) {
      throw new WasmMirrorError(
        'KEY_MISMATCH',
        `the public key file ${pubFile} does not match the signing key ${file} (keyid ${await signer.keyId()}); ` +
          'one of them was replaced. Restore the matching pair, or start with --rotate-key (rotateKey) to ' +
          'rewrite the public key file from the signing key',
      );
    }
  }
  const pem = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }).export({
    format: 'pem',
    type: 'spki',
  });
  try {
    await writeFileAtomic(pubFile, pem, 0o644);
  } catch (err) {
    throw new WasmMirrorError('CONFIG_INVALID', `cannot write the public key ${pubFile}: ${String(err)}`, {
      cause: err,
    });
  }
}

function samePublicKey(pem: string, spki: Uint8Array): boolean {
  try {
    const der = createPublicKey({ key: pem, format: 'pem' }).export({ format: 'der', type: 'spki' });
    return Buffer.compare(der, spki) === 0;
  } catch {
    return false;
  }
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
