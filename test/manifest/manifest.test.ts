import { execFileSync } from 'node:child_process';
import { createHash, verify as cryptoVerify, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import {
  buildPayload,
  canonicalize,
  decodeBase64Strict,
  loadTrustedKeys,
  pae,
  renderKeysJson,
  signManifest,
  spkiToPem,
  type TrustedKey,
  verifyManifest,
} from '../../shared/core/manifest/index.ts';
import { parseStrictJson } from '../../shared/core/strict-json.ts';
import { opensslVerifies } from '../support/mirror.ts';
import { type AttackContext, attackCases } from './attacks.ts';
import { moduleEntry, newSigner, payloadOf, T0, trusted } from './helpers.ts';
import { derToRawSignature, webCryptoVerifies } from './webcrypto.ts';

const NOW = new Date(T0.getTime() + 3600e3);

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (isWasmMirrorError(err)) return err.code;
    throw err;
  }
  return undefined;
}

describe('RFC 8785 canonical JSON', () => {
  it('sorts keys by UTF-16 code units and prints ECMAScript numbers', () => {
    // Prepare: RFC 8785 section 3.2.3's sorting example, in short.
    const value = {
      '\u20ac': 'Euro',
      '\r': 'CR',
      '\ufb33': 'Hebrew',
      '1': 'One',
      '\ud83d\ude00': 'Smiley',
      '\u0080': 'Ctl',
    };
    // Act
    const text = canonicalize(value);
    // Assess
    const order = ['\\r', '1', '\u0080', '\u20ac', '\ud83d\ude00', '\ufb33'].map((k) =>
      text.indexOf(`"${k}"`),
    );
    expect(order.every((at, i) => at >= 0 && (i === 0 || at > (order[i - 1] ?? 0)))).toBe(true);
    expect(canonicalize({ b: [1e21, 1e-7, -0, 0.1 + 0.2, 42.0], a: 'x\u000f"\\' })).toBe(
      '{"a":"x\\u000f\\"\\\\","b":[1e+21,1e-7,0,0.30000000000000004,42]}',
    );
  });

  it('refuses what JCS cannot represent', () => {
    // Act / Assess
    expect(() => canonicalize({ a: undefined })).toThrow(/unsupported type undefined/);
    expect(() => canonicalize([Number.NaN])).toThrow(/finite/);
    expect(() => canonicalize({ d: new Date() })).toThrow(/plain object/);
    expect(() => canonicalize('\ud800')).toThrow(/lone surrogate/);
  });
});

describe('strict JSON and base64', () => {
  it('rejects duplicate keys, deep nesting, junk and lone surrogates', () => {
    // Act / Assess
    expect(() => parseStrictJson('{"a":1,"a":2}')).toThrow(/duplicate key "a"/);
    expect(() => parseStrictJson('[[[1]]]', { maxDepth: 2 })).toThrow(/nesting/);
    expect(() => parseStrictJson('{"a":1} x')).toThrow(/after the JSON value/);
    expect(() => parseStrictJson('"\\ud800"')).toThrow(/lone surrogate/);
    expect(() => parseStrictJson('01')).toThrow();
    expect(() => parseStrictJson('\ufeff{}')).toThrow();
    const o = parseStrictJson('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(o)).toBe(Object.prototype);
    expect(Object.keys(o)).toEqual(['__proto__']);
  });

  it('accepts standard and URL-safe base64, padded or not, and nothing else', () => {
    // Prepare
    const bytes = Uint8Array.from([0xfb, 0xff, 0xbf, 0x01]);
    // Act / Assess
    for (const text of ['+/+/AQ==', '+/+/AQ', '-_-_AQ==', '-_-_AQ'])
      expect(decodeBase64Strict(text)).toEqual(bytes);
    for (const junk of [
      '+/+/AQ=',
      '+/+/AR==',
      '-/+_AQ==',
      '+/+/ AQ==',
      '+/+/AQ==\n',
      'A',
      '+/+/AQ===',
      '=AQ',
    ]) {
      expect(decodeBase64Strict(junk), junk).toBeUndefined();
    }
  });
});

describe('DSSE', () => {
  it('builds the pre-authentication encoding with byte lengths', () => {
    const text = new TextDecoder().decode(pae('t\u00e9', new TextEncoder().encode('h\u00e9')));
    expect(text).toBe('DSSEv1 3 t\u00e9 3 h\u00e9');
  });
});

describe('LocalKeySigner', () => {
  it('signs a message: a DER ECDSA signature over its SHA-256, of any length', async () => {
    // Prepare
    const signer = newSigner();
    const spki = { key: Buffer.from(await signer.publicKeySpki()), format: 'der', type: 'spki' } as const;
    // Act / Assess
    for (const message of [
      new Uint8Array(0),
      Buffer.from('DSSEv1 1 t 2 {}'),
      new Uint8Array(1 << 20).fill(7),
    ]) {
      const sig = await signer.sign(message);
      expect(sig[0]).toBe(0x30); // a DER SEQUENCE, not raw r||s
      expect(cryptoVerify('sha256', message, spki, sig)).toBe(true);
      expect(cryptoVerify('sha256', Buffer.concat([message, Buffer.of(0)]), spki, sig)).toBe(false);
    }
  });

  it('signs a manifest that WebCrypto verifies over the PAE (r||s decoded from DER)', async () => {
    // Prepare
    const signer = newSigner();
    const spki = await signer.publicKeySpki();
    // Act / Assess
    for (let i = 0; i < 8; i++) {
      const { envelope } = await signManifest(payloadOf([], { version: i + 1 }), signer);
      expect(await webCryptoVerifies(envelope, spki)).toBe(true);
      const other = { ...envelope, payloadType: `${envelope.payloadType}x` };
      expect(await webCryptoVerifies(other, spki)).toBe(false);
    }
    // The test's DER decoder itself: short integers are left-padded, a sign byte is dropped.
    const der = Uint8Array.of(0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x05);
    const raw = derToRawSignature(der);
    expect(raw.length).toBe(64);
    expect([raw[31], raw[63], raw.slice(0, 31).every((b) => b === 0)]).toEqual([0x80, 0x05, true]);
  });

  describe('with files', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'wm-signer-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('creates the key 0600 on first start and reuses it', async () => {
      // Act
      const a = await loadOrCreateKey(join(dir, 'data'));
      const b = await loadOrCreateKey(join(dir, 'data'));
      // Assess
      expect(await a.keyId()).toBe(await b.keyId());
      expect(statSync(join(dir, 'data', 'signing-key.pem')).mode & 0o777).toBe(0o600);
    });

    it('agrees on one key when several processes start at once, and writes the public half', async () => {
      // Act
      const signers = await Promise.all(Array.from({ length: 8 }, () => loadOrCreateKey(join(dir, 'race'))));
      const ids = new Set(await Promise.all(signers.map((x) => x.keyId())));
      // Assess
      expect(ids.size).toBe(1);
      const pub = readFileSync(join(dir, 'race', 'signing-key.pub.pem'), 'utf8');
      expect(loadTrustedKeys(pub)[0]!.keyid).toBe([...ids][0]);
      expect(readdirSync(join(dir, 'race')).sort()).toEqual(['signing-key.pem', 'signing-key.pub.pem']);
    });

    it('signs a manifest that `openssl dgst -sha256 -verify` accepts over the PAE', async () => {
      // Prepare
      const signer = newSigner();
      // Act
      const { envelope, payloadBytes } = await signManifest(payloadOf([]), signer);
      // Assess
      const pem = spkiToPem(await signer.publicKeySpki());
      // The PAE is rebuilt independently of the code under test before openssl checks it.
      expect(opensslVerifies(envelope, pem)).toBe(true);
      expect(Buffer.compare(payloadBytes, Buffer.from(envelope.payload, 'base64'))).toBe(0);
      writeFileSync(join(dir, 'pub.pem'), pem);
      // keyid is the sha256 of the SPKI DER, as openssl computes it too.
      const der = execFileSync('openssl', ['pkey', '-pubin', '-in', join(dir, 'pub.pem'), '-outform', 'DER']);
      expect(envelope.signatures[0]!.keyid).toBe(createHash('sha256').update(der).digest('hex'));
    });
  });
});

describe('trusted keys', () => {
  it('reads PEM bundles and keys.json, recomputing keyids', async () => {
    // Prepare
    const a = newSigner();
    const b = newSigner();
    const pem = spkiToPem(await a.publicKeySpki()) + spkiToPem(await b.publicKeySpki());
    // Act / Assess: a PEM bundle.
    expect(loadTrustedKeys(pem).map((k) => k.keyid)).toEqual([await a.keyId(), await b.keyId()]);

    // Act / Assess: keys.json, with validity dates.
    const json = renderKeysJson([
      { publicKey: await a.publicKeySpki(), notAfter: '2026-02-01T00:00:00Z' },
      { publicKey: await b.publicKeySpki(), notBefore: new Date('2026-01-01T00:00:00Z') },
    ]);
    const keys = loadTrustedKeys(json);
    expect(keys[0]!.notAfter?.toISOString()).toBe('2026-02-01T00:00:00.000Z');
    expect(keys[1]!.notBefore?.toISOString()).toBe('2026-01-01T00:00:00.000Z');

    // Act / Assess: keys.json with a base64 DER key.
    const der = Buffer.from(await a.publicKeySpki()).toString('base64');
    expect(loadTrustedKeys(JSON.stringify({ keys: [{ publicKey: der }] }))[0]!.keyid).toBe(await a.keyId());
  });

  it('refuses a stated keyid that does not match, typos, private keys and other curves', async () => {
    // Prepare
    const a = newSigner();
    const b = newSigner();
    // Act / Assess
    const lie = JSON.stringify({
      keys: [{ keyid: await b.keyId(), publicKey: spkiToPem(await a.publicKeySpki()) }],
    });
    expect(codeOf(() => loadTrustedKeys(lie))).toBe('TRUSTED_KEYS_INVALID');
    const typo = JSON.stringify({
      keys: [{ publicKey: spkiToPem(await a.publicKeySpki()), notAfer: '2026-01-01T00:00:00Z' }],
    });
    expect(codeOf(() => loadTrustedKeys(typo))).toBe('TRUSTED_KEYS_INVALID');
    const priv = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({
      format: 'pem',
      type: 'pkcs8',
    });
    expect(codeOf(() => loadTrustedKeys(String(priv)))).toBe('TRUSTED_KEYS_INVALID');
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({
      format: 'pem',
      type: 'spki',
    });
    expect(codeOf(() => loadTrustedKeys(String(p384)))).toBe('TRUSTED_KEYS_INVALID');
    expect(codeOf(() => loadTrustedKeys(''))).toBe('TRUSTED_KEYS_INVALID');
  });
});

describe('payload', () => {
  it('sorts modules and refuses repeats and bad fields', () => {
    // Prepare
    const m = (name: string, tag: string) => moduleEntry(name, new TextEncoder().encode(name + tag), tag);
    // Act
    const p = buildPayload({
      mirror: 'x',
      version: 1,
      issuedAt: T0,
      modules: [m('b', '1'), m('a', '2'), m('a', '1')],
    });
    // Assess
    expect(p.modules.map((x) => `${x.name}:${x.tag}`)).toEqual(['a:1', 'a:2', 'b:1']);
    expect(p.expiresAt).toBe('2026-01-12T12:00:00.000Z');
    // Act / Assess: repeats and bad fields.
    const build = (modules: ReturnType<typeof m>[]) => () =>
      buildPayload({ mirror: 'x', version: 1, modules });
    expect(codeOf(build([m('a', '1'), m('a', '1')]))).toBe('SCHEMA_ERROR');
    expect(codeOf(build([{ ...m('a', '1'), sha256: 'ABC' }]))).toBe('SCHEMA_ERROR');
    expect(codeOf(build([{ ...m('a', '1'), ociDigest: 'sha512:00' }]))).toBe('SCHEMA_ERROR');
    expect(codeOf(build([{ ...m('a', '1'), size: 1.5 }]))).toBe('SCHEMA_ERROR');
    expect(codeOf(build([{ ...m('a', '1'), mirroredAt: '2026-02-30T00:00:00Z' }]))).toBe('SCHEMA_ERROR');
  });
});

describe('verifyManifest', () => {
  const ctx = {} as AttackContext;
  let keys: TrustedKey[];

  beforeAll(async () => {
    ctx.signer = newSigner();
    ctx.now = NOW;
    ctx.good = payloadOf([moduleEntry('ghcr.io/acme/basic-auth', new Uint8Array([0, 97, 115, 109]))]);
    ctx.goodBytes = (await signManifest(ctx.good, ctx.signer)).bytes;
    keys = [await trusted(ctx.signer)];
  });

  const lastAccepted = () => ({
    version: 42,
    payloadSha256: verifyManifest(ctx.goodBytes, { trustedKeys: keys, now: NOW }).payloadSha256,
  });

  it('accepts the good manifest and returns the payload parsed from the signed bytes', async () => {
    // Act
    const v = verifyManifest(ctx.goodBytes, { trustedKeys: keys, now: NOW, mirrorName: 'prod-mesh' });
    // Assess
    expect(v.payload).toEqual(ctx.good);
    expect(v.keyid).toBe(await ctx.signer.keyId());
    expect(new TextDecoder().decode(v.payloadBytes)).toBe(canonicalize(ctx.good));
    // the same bytes again are fine (equal version, identical bytes)
    expect(() =>
      verifyManifest(ctx.goodBytes, { trustedKeys: keys, now: NOW, lastAccepted: lastAccepted() }),
    ).not.toThrow();
  });

  it('accepts URL-safe unpadded base64', () => {
    // Prepare
    const e = JSON.parse(new TextDecoder().decode(ctx.goodBytes));
    const url = (s: string) => s.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
    e.payload = url(e.payload);
    e.signatures[0].sig = url(e.signatures[0].sig);
    const bytes = new TextEncoder().encode(JSON.stringify(e));
    // Act / Assess
    expect(verifyManifest(bytes, { trustedKeys: keys, now: NOW }).payload.version).toBe(42);
  });

  it('refuses a null keyid', () => {
    // Prepare
    const e = JSON.parse(new TextDecoder().decode(ctx.goodBytes));
    const bytes = new TextEncoder().encode(
      JSON.stringify({ ...e, signatures: [{ ...e.signatures[0], keyid: null }] }),
    );
    // Act / Assess
    expect(codeOf(() => verifyManifest(bytes, { trustedKeys: keys, now: NOW }))).toBe('ENVELOPE_MALFORMED');
  });

  it('ignores unrecognised envelope and signature fields, as DSSE requires of consumers', () => {
    // Prepare
    const e = JSON.parse(new TextDecoder().decode(ctx.goodBytes));
    const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    const variants = [
      { ...e, extension: { kind: 'x-example', data: { nested: [1, 2, { deeper: true }] } } },
      { ...e, signatures: [{ ...e.signatures[0], cert }] },
      { extra: null, ...e, signatures: [{ cert, ...e.signatures[0], timestamp: 1 }], payloadHints: ['a'] },
    ];
    // Act / Assess
    for (const v of variants) {
      const bytes = new TextEncoder().encode(JSON.stringify(v));
      const verified = verifyManifest(bytes, { trustedKeys: keys, now: NOW, mirrorName: 'prod-mesh' });
      expect(verified.payload).toEqual(ctx.good);
      // What the verifier hands on holds only the fields it understood.
      expect(Object.keys(verified.envelope).sort()).toEqual(['payload', 'payloadType', 'signatures']);
      expect(Object.keys(verified.envelope.signatures[0]!).sort()).toEqual(['keyid', 'sig']);
    }
  });

  it('stays strict inside ignored fields: duplicate keys and nesting bombs are refused', () => {
    // Prepare
    const text = new TextDecoder().decode(ctx.goodBytes);
    const dupInSignature = text.replace('"sig":', '"cert":"a","cert":"b","sig":');
    const dupInExtension = text.replace(/^\{/, '{"ext":{"a":1,"a":2},');
    const bomb = text.replace(/^\{/, `{"ext":${'['.repeat(100)}${']'.repeat(100)},`);
    // Act / Assess
    for (const variant of [dupInSignature, dupInExtension, bomb]) {
      expect(variant).not.toBe(text);
      const bytes = new TextEncoder().encode(variant);
      expect(codeOf(() => verifyManifest(bytes, { trustedKeys: keys, now: NOW }))).toBe('ENVELOPE_MALFORMED');
    }
  });

  it('refuses an envelope over the size cap', () => {
    expect(codeOf(() => verifyManifest(ctx.goodBytes, { trustedKeys: keys, now: NOW, maxBytes: 100 }))).toBe(
      'MANIFEST_TOO_LARGE',
    );
  });

  it('tries every trusted key when keyid is empty, and rotation keeps both keys usable', async () => {
    // Prepare
    const next = newSigner();
    const signed = await signManifest(payloadOf([], { version: 43 }), next);
    const e = { ...signed.envelope, signatures: [{ keyid: '', sig: signed.envelope.signatures[0]!.sig }] };
    const both = [...keys, await trusted(next)];
    // Act / Assess
    expect(
      verifyManifest(new TextEncoder().encode(JSON.stringify(e)), { trustedKeys: both, now: NOW }).keyid,
    ).toBe(await next.keyId());
  });

  for (const attack of attackCases) {
    it(`refuses ${attack.name} with ${attack.code}`, async () => {
      // Prepare
      const built = await attack.build(ctx);
      // Act
      const started = performance.now();
      const code = codeOf(() =>
        verifyManifest(built.bytes, {
          trustedKeys: built.trustedKeys ?? keys,
          now: built.now ?? NOW,
          mirrorName: 'prod-mesh',
          lastAccepted: lastAccepted(),
        }),
      );
      // Assess
      expect(code).toBe(attack.code);
      expect(performance.now() - started).toBeLessThan(500);
    });
  }
});
