/**
 * DSSE v1 envelopes (https://github.com/secure-systems-lab/dsse): the pre-authentication
 * encoding that is actually signed, and envelope parsing. Parsing is strict where it matters
 * (UTF-8, duplicate keys, types, base64) and ignores fields it does not know, as the spec
 * requires of consumers: producers may add `cert` to a signature or extensions to the envelope.
 */
import type { DsseEnvelope } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { decodeUtf8Strict, parseStrictJson } from '../strict-json.ts';
import { decodeBase64Strict } from './base64.ts';
import { canonicalize } from './jcs.ts';

/** Envelopes with more signatures are refused outright, so a crafted envelope cannot cost N verifies. */
export const MAX_SIGNATURES = 16;
// Ignored extension fields may nest a little; the bound only stops a nesting bomb.
const MAX_ENVELOPE_DEPTH = 32;

const encoder = new TextEncoder();

/** `DSSEv1 <len(type)> <type> <len(body)> <body>`, lengths in bytes as ASCII decimal. */
export function pae(payloadType: string, payload: Uint8Array): Uint8Array {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} `);
  const mid = encoder.encode(` ${payload.length} `);
  const out = new Uint8Array(head.length + type.length + mid.length + payload.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(mid, head.length + type.length);
  out.set(payload, head.length + type.length + mid.length);
  return out;
}

export interface ParsedSignature {
  /** Empty when the envelope gave none. */
  keyid: string;
  sig: Uint8Array;
}

export interface ParsedEnvelope {
  envelope: DsseEnvelope;
  payloadType: string;
  payload: Uint8Array;
  signatures: ParsedSignature[];
}

function malformed(message: string, cause?: unknown): WasmMirrorError {
  return new WasmMirrorError('ENVELOPE_MALFORMED', `DSSE envelope: ${message}`, { cause });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses envelope bytes: strict UTF-8, no duplicate keys anywhere, strict base64. Unrecognised
 * envelope and signature fields are ignored (DSSE: consumers MUST ignore them); nothing outside
 * the signed payload decides what an agent accepts, and the payload is checked on its own.
 */
export function parseEnvelope(bytes: Uint8Array): ParsedEnvelope {
  let doc: unknown;
  try {
    doc = parseStrictJson(decodeUtf8Strict(bytes), { maxDepth: MAX_ENVELOPE_DEPTH, nullPrototype: true });
  } catch (err) {
    throw malformed(err instanceof Error ? err.message : String(err), err);
  }
  if (!isPlainObject(doc)) throw malformed('not a JSON object');
  const { payload, payloadType, signatures } = doc;
  if (typeof payload !== 'string') throw malformed('"payload" must be a string');
  if (typeof payloadType !== 'string') throw malformed('"payloadType" must be a string');
  if (!Array.isArray(signatures)) throw malformed('"signatures" must be an array');
  if (signatures.length > MAX_SIGNATURES) {
    throw malformed(`${signatures.length} signatures (at most ${MAX_SIGNATURES} are examined)`);
  }
  const payloadBytes = decodeBase64Strict(payload);
  if (payloadBytes === undefined) throw malformed('"payload" is not strict base64');
  const parsed: ParsedSignature[] = [];
  const envelopeSigs: DsseEnvelope['signatures'] = [];
  signatures.forEach((s: unknown, i: number) => {
    if (!isPlainObject(s)) throw malformed(`signatures[${i}] must be an object`);
    const keyid = Object.hasOwn(s, 'keyid') ? s.keyid : '';
    if (typeof keyid !== 'string') throw malformed(`signatures[${i}].keyid must be a string`);
    if (typeof s.sig !== 'string') throw malformed(`signatures[${i}].sig must be a string`);
    const sig = decodeBase64Strict(s.sig);
    if (sig === undefined || sig.length === 0) throw malformed(`signatures[${i}].sig is not strict base64`);
    parsed.push({ keyid, sig });
    envelopeSigs.push({ keyid, sig: s.sig });
  });
  return {
    envelope: { payload, payloadType, signatures: envelopeSigs },
    payloadType,
    payload: payloadBytes,
    signatures: parsed,
  };
}

/** Envelope bytes as stored: canonical JSON, so the same envelope always has the same bytes. */
export function serializeEnvelope(envelope: DsseEnvelope): Uint8Array {
  return encoder.encode(canonicalize(envelope));
}
