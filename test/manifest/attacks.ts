/**
 * The attack catalogue against manifest verification. Each case yields envelope bytes (and, when
 * the attack is about the verifier's setup, its trusted keys or last accepted version) and the
 * exact error code it must produce. The manifest suite runs them against verifyManifest; the
 * agent suite serves them from a mirror and checks the last good modules stay in place.
 */

import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import type { ManifestPayload } from '../../shared/core/domain.ts';
import type { ErrorCode } from '../../shared/core/errors.ts';
import {
  canonicalize,
  decodeBase64Strict,
  encodeBase64,
  signManifest,
  type TrustedKey,
} from '../../shared/core/manifest/index.ts';
import { canonicalBytes, jsonBytes, newSigner, payloadOf, signRaw, trusted } from './helpers.ts';

export interface AttackContext {
  signer: LocalKeySigner;
  /** The accepted manifest (version 42) the verifier has already seen. */
  good: ManifestPayload;
  goodBytes: Uint8Array;
  now: Date;
}

export interface AttackCase {
  name: string;
  code: ErrorCode;
  build(ctx: AttackContext): Promise<{ bytes: Uint8Array; trustedKeys?: TrustedKey[]; now?: Date }>;
}

type Envelope = { payload: string; payloadType: string; signatures: { keyid: string; sig: string }[] };

const enc = (e: unknown) => jsonBytes(JSON.stringify(e));
const dec = (b: Uint8Array): Envelope => JSON.parse(new TextDecoder().decode(b));

function flipBit(bytes: Uint8Array, index: number, bit = 0): Uint8Array {
  const out = bytes.slice();
  out[index] = (out[index] ?? 0) ^ (1 << bit);
  return out;
}

/** Signs a payload object that is deliberately off-schema (canonicalised, so only the schema is wrong). */
async function signObject(ctx: AttackContext, mutate: (p: Record<string, unknown>) => void) {
  const p = structuredClone(ctx.good) as unknown as Record<string, unknown>;
  mutate(p);
  return enc(await signRaw(canonicalBytes(p), ctx.signer));
}

export const attackCases: AttackCase[] = [
  {
    name: 'a flipped bit in the payload',
    code: 'SIGNATURE_INVALID',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      const payload = decodeBase64Strict(e.payload)!;
      e.payload = encodeBase64(flipBit(payload, payload.length - 20));
      return { bytes: enc(e) };
    },
  },
  {
    name: 'a flipped bit in the signature',
    code: 'SIGNATURE_INVALID',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      const sig = decodeBase64Strict(e.signatures[0]!.sig)!;
      e.signatures[0]!.sig = encodeBase64(flipBit(sig, sig.length - 3));
      return { bytes: enc(e) };
    },
  },
  {
    name: 'a flipped bit in the payloadType',
    code: 'PAYLOAD_TYPE_MISMATCH',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      e.payloadType = new TextDecoder().decode(flipBit(jsonBytes(e.payloadType), 5, 5));
      return { bytes: enc(e) };
    },
  },
  {
    name: 'a signature by an untrusted key carrying the trusted keyid',
    code: 'SIGNATURE_INVALID',
    async build(ctx) {
      const p = payloadOf(ctx.good.modules, { version: 43 });
      return {
        bytes: enc(await signRaw(canonicalBytes(p), newSigner(), { keyid: await ctx.signer.keyId() })),
      };
    },
  },
  {
    name: 'an unknown keyid',
    code: 'UNKNOWN_KEY',
    async build(ctx) {
      const p = payloadOf(ctx.good.modules, { version: 43 });
      return { bytes: (await signManifest(p, newSigner())).bytes };
    },
  },
  {
    name: 'an expired (retired) key',
    code: 'KEY_NOT_VALID',
    async build(ctx) {
      const p = payloadOf(ctx.good.modules, { version: 43 });
      const retired = await trusted(ctx.signer, { notAfter: new Date(ctx.now.getTime() - 1000) });
      return { bytes: (await signManifest(p, ctx.signer)).bytes, trustedKeys: [retired] };
    },
  },
  {
    name: 'zero signatures',
    code: 'NO_SIGNATURES',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      e.signatures = [];
      return { bytes: enc(e) };
    },
  },
  {
    name: '10,000 signatures',
    code: 'ENVELOPE_MALFORMED',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      const sig = e.signatures[0]!;
      e.signatures = Array.from({ length: 10_000 }, () => ({ ...sig }));
      return { bytes: enc(e) };
    },
  },
  {
    name: 'duplicate keys in the envelope',
    code: 'ENVELOPE_MALFORMED',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      const evil = encodeBase64(canonicalBytes({ ...ctx.good, version: 99 }));
      const text = `{"payload":${JSON.stringify(e.payload)},"payloadType":${JSON.stringify(e.payloadType)},"signatures":${JSON.stringify(e.signatures)},"payload":${JSON.stringify(evil)}}`;
      return { bytes: jsonBytes(text) };
    },
  },
  {
    name: 'duplicate keys in the signed payload',
    code: 'SCHEMA_ERROR',
    async build(ctx) {
      const text = canonicalize({ ...ctx.good, version: 43 }).replace(
        '"version":43',
        '"version":43,"version":44',
      );
      return { bytes: enc(await signRaw(jsonBytes(text), ctx.signer)) };
    },
  },
  {
    name: 'junk in the payload base64',
    code: 'ENVELOPE_MALFORMED',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      e.payload = `${e.payload.slice(0, 10)}!*${e.payload.slice(10)}`;
      return { bytes: enc(e) };
    },
  },
  {
    name: 'whitespace inside the signature base64',
    code: 'ENVELOPE_MALFORMED',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      e.signatures[0]!.sig = `${e.signatures[0]!.sig.slice(0, 8)} \n${e.signatures[0]!.sig.slice(8)}`;
      return { bytes: enc(e) };
    },
  },
  {
    name: 'mixed standard and URL-safe alphabets',
    code: 'ENVELOPE_MALFORMED',
    async build(ctx) {
      const e = dec(ctx.goodBytes);
      e.payload = `-+${e.payload.slice(2)}`;
      return { bytes: enc(e) };
    },
  },
  {
    name: 'version as the string "42"',
    code: 'SCHEMA_ERROR',
    build: (ctx) => signObject(ctx, (p) => (p.version = '42')).then((bytes) => ({ bytes })),
  },
  {
    name: 'version written as 42.0',
    code: 'SCHEMA_ERROR',
    async build(ctx) {
      const text = canonicalize(ctx.good).replace('"version":42', '"version":42.0');
      return { bytes: enc(await signRaw(jsonBytes(text), ctx.signer)) };
    },
  },
  {
    name: 'version -1',
    code: 'SCHEMA_ERROR',
    build: (ctx) => signObject(ctx, (p) => (p.version = -1)).then((bytes) => ({ bytes })),
  },
  {
    name: 'version 2^53',
    code: 'SCHEMA_ERROR',
    build: (ctx) => signObject(ctx, (p) => (p.version = 2 ** 53)).then((bytes) => ({ bytes })),
  },
  {
    name: 'an unknown payload field',
    code: 'SCHEMA_ERROR',
    build: (ctx) => signObject(ctx, (p) => (p.urls = ['https://evil.example/'])).then((bytes) => ({ bytes })),
  },
  {
    name: 'an expired manifest',
    code: 'MANIFEST_EXPIRED',
    async build(ctx) {
      const p = payloadOf(ctx.good.modules, {
        version: 43,
        issuedAt: new Date(ctx.now.getTime() - 72 * 3600e3),
      });
      return { bytes: (await signManifest(p, ctx.signer)).bytes };
    },
  },
  {
    name: 'issuedAt far in the future',
    code: 'MANIFEST_FROM_FUTURE',
    async build(ctx) {
      const p = payloadOf(ctx.good.modules, {
        version: 43,
        issuedAt: new Date(ctx.now.getTime() + 365 * 86400e3),
      });
      return { bytes: (await signManifest(p, ctx.signer)).bytes };
    },
  },
  {
    name: 'a validly signed older version (rollback)',
    code: 'ROLLBACK',
    async build(ctx) {
      return { bytes: (await signManifest(payloadOf([], { version: 41 }), ctx.signer)).bytes };
    },
  },
  {
    name: 'the same version with other content',
    code: 'VERSION_CONFLICT',
    async build(ctx) {
      return { bytes: (await signManifest(payloadOf([], { version: 42 }), ctx.signer)).bytes };
    },
  },
  {
    name: "another mirror's manifest signed by the same key",
    code: 'WRONG_MIRROR',
    async build(ctx) {
      const p = payloadOf(ctx.good.modules, { version: 43, mirror: 'staging-mesh' });
      return { bytes: (await signManifest(p, ctx.signer)).bytes };
    },
  },
  {
    name: 'a validly signed DSSE envelope of another payloadType',
    code: 'PAYLOAD_TYPE_MISMATCH',
    async build(ctx) {
      const p = canonicalBytes({ ...ctx.good, version: 43 });
      return { bytes: enc(await signRaw(p, ctx.signer, { payloadType: 'application/vnd.in-toto+json' })) };
    },
  },
  {
    name: 'deeply nested JSON in the envelope',
    code: 'ENVELOPE_MALFORMED',
    async build() {
      return { bytes: jsonBytes(`${'['.repeat(200_000)}${']'.repeat(200_000)}`) };
    },
  },
  {
    name: 'deeply nested JSON in the signed payload',
    code: 'SCHEMA_ERROR',
    async build(ctx) {
      const text = canonicalize({ ...ctx.good, version: 43 }).replace(
        '"modules":[',
        `"modules":[${'['.repeat(5000)}${']'.repeat(5000)},`,
      );
      return { bytes: enc(await signRaw(jsonBytes(text), ctx.signer)) };
    },
  },
];
