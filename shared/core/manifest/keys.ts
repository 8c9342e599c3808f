/**
 * Trusted public keys. Agents pin them out of band (a PEM or a keys.json in a ConfigMap); the
 * keyid is always recomputed from the key bytes so a file cannot claim one key's id for another.
 */
import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { WasmMirrorError } from '../errors.ts';
import { parseStrictJson } from '../strict-json.ts';
import { decodeBase64Strict } from './base64.ts';
import { parseIsoTime } from './payload.ts';

export interface TrustedKey {
  /** Lowercase hex sha256 of `spki`. */
  keyid: string;
  /** DER SubjectPublicKeyInfo. */
  spki: Uint8Array;
  publicKey: KeyObject;
  /** Not trusted before this instant, when set. */
  notBefore?: Date;
  /** Not trusted from this instant on, when set (a retired key). */
  notAfter?: Date;
}

export function keyIdOf(spki: Uint8Array): string {
  return createHash('sha256').update(spki).digest('hex');
}

export function spkiToPem(spki: Uint8Array): string {
  const b64 = Buffer.from(spki).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN PUBLIC KEY-----\n${lines.join('\n')}\n-----END PUBLIC KEY-----\n`;
}

export function isKeyValidAt(key: TrustedKey, now: Date): boolean {
  const t = now.getTime();
  if (key.notBefore !== undefined && t < key.notBefore.getTime()) return false;
  if (key.notAfter !== undefined && t >= key.notAfter.getTime()) return false;
  return true;
}

function invalid(message: string, cause?: unknown): WasmMirrorError {
  return new WasmMirrorError('TRUSTED_KEYS_INVALID', message, { cause });
}

/** Builds a TrustedKey from a PEM public key or DER SPKI; only ECDSA P-256 is accepted. */
export function trustedKeyFrom(
  key: string | Uint8Array,
  validity: { notBefore?: Date; notAfter?: Date } = {},
): TrustedKey {
  let publicKey: KeyObject;
  try {
    publicKey =
      typeof key === 'string'
        ? createPublicKey({ key, format: 'pem' })
        : createPublicKey({ key: Buffer.from(key), format: 'der', type: 'spki' });
  } catch (err) {
    throw invalid('not a readable public key', err);
  }
  if (publicKey.asymmetricKeyType !== 'ec' || publicKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    throw invalid('trusted keys must be ECDSA P-256 public keys');
  }
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const k: TrustedKey = { keyid: keyIdOf(spki), spki, publicKey };
  if (validity.notBefore !== undefined) k.notBefore = validity.notBefore;
  if (validity.notAfter !== undefined) k.notAfter = validity.notAfter;
  return k;
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * Reads trusted keys from a PEM file (one or more `PUBLIC KEY` blocks) or a keys.json
 * `{"keys":[{"keyid"?,"publicKey","notBefore"?,"notAfter"?}]}` where publicKey is PEM or base64
 * SPKI DER. A stated keyid that does not match the key is an error, not a hint.
 */
export function loadTrustedKeys(text: string): TrustedKey[] {
  const trimmed = text.trim();
  const keys = trimmed.startsWith('{') ? fromKeysJson(trimmed) : fromPem(trimmed);
  if (keys.length === 0) throw invalid('no public keys found');
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k.keyid)) throw invalid(`key ${k.keyid} is listed twice`);
    seen.add(k.keyid);
  }
  return keys;
}

function fromPem(text: string): TrustedKey[] {
  const keys: TrustedKey[] = [];
  for (const m of text.matchAll(PEM_BLOCK)) {
    if (m[1] !== 'PUBLIC KEY') {
      throw invalid(`unexpected PEM block "${m[1]}" (only PUBLIC KEY blocks are trusted keys)`);
    }
    keys.push(trustedKeyFrom(m[0]));
  }
  return keys;
}

function fromKeysJson(text: string): TrustedKey[] {
  let doc: unknown;
  try {
    doc = parseStrictJson(text, { maxDepth: 8 });
  } catch (err) {
    throw invalid(`keys.json: ${err instanceof Error ? err.message : String(err)}`, err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw invalid('keys.json must be an object');
  const root = doc as Record<string, unknown>;
  for (const key of Object.keys(root)) {
    if (key !== 'keys' && key !== 'mirror') throw invalid(`keys.json has unknown field "${key}"`);
  }
  if (!Array.isArray(root.keys)) throw invalid('keys.json: "keys" must be an array');
  return root.keys.map((entry: unknown, i: number) => {
    const where = `keys.json keys[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry))
      throw invalid(`${where} must be an object`);
    const e = entry as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      // A typo such as "notAfer" must not silently keep a retired key trusted.
      if (!['keyid', 'publicKey', 'notBefore', 'notAfter'].includes(key)) {
        throw invalid(`${where} has unknown field "${key}"`);
      }
    }
    if (typeof e.publicKey !== 'string') throw invalid(`${where}.publicKey must be a string`);
    let material: string | Uint8Array = e.publicKey;
    if (!e.publicKey.includes('-----BEGIN')) {
      const der = decodeBase64Strict(e.publicKey.replace(/\s+/g, ''));
      if (der === undefined) throw invalid(`${where}.publicKey is neither PEM nor base64 DER`);
      material = der;
    } else {
      const blocks = [...e.publicKey.matchAll(PEM_BLOCK)];
      if (blocks.length !== 1 || blocks[0]?.[1] !== 'PUBLIC KEY') {
        throw invalid(`${where}.publicKey must hold exactly one PUBLIC KEY block`);
      }
    }
    const validity: { notBefore?: Date; notAfter?: Date } = {};
    for (const field of ['notBefore', 'notAfter'] as const) {
      const v = e[field];
      if (v === undefined) continue;
      if (typeof v !== 'string' || parseIsoTime(v) === undefined) {
        throw invalid(`${where}.${field} must be an ISO 8601 UTC timestamp`);
      }
      validity[field] = new Date(v);
    }
    const k = trustedKeyFrom(material, validity);
    if (e.keyid !== undefined && e.keyid !== k.keyid) {
      throw invalid(
        `${where}.keyid ${String(e.keyid)} does not match the key (sha256 of its SPKI is ${k.keyid})`,
      );
    }
    return k;
  });
}

export interface KeysJsonEntry {
  /** DER SPKI or PEM. */
  publicKey: Uint8Array | string;
  notBefore?: Date | string;
  notAfter?: Date | string;
}

/** The keys.json the publisher writes beside the manifests; loadTrustedKeys reads it back. */
export function renderKeysJson(entries: readonly KeysJsonEntry[]): string {
  const keys = entries.map((entry) => {
    const k = trustedKeyFrom(entry.publicKey);
    const out: Record<string, string> = { keyid: k.keyid, publicKey: spkiToPem(k.spki) };
    if (entry.notBefore !== undefined) out.notBefore = new Date(entry.notBefore).toISOString();
    if (entry.notAfter !== undefined) out.notAfter = new Date(entry.notAfter).toISOString();
    return out;
  });
  return `${JSON.stringify({ keys }, null, 2)}\n`;
}
