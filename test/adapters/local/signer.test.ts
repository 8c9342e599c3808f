/**
 * The embedded signing key on disk: created once on an empty data directory, never replaced
 * behind the operator's back. A missing or swapped key with published manifests, or a public
 * key file out of step with the private one, stops the start unless a rotation is asked for.
 */
import { generateKeyPairSync } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../../shared/adapters/local/fs-object-store.ts';
import {
  generateKeyPairPem,
  type LocalKeySigner,
  loadOrCreateKey,
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  publishedKeyIds,
} from '../../../shared/adapters/local/signer.ts';
import { parseConfig } from '../../../shared/core/config.ts';
import { storageKeys } from '../../../shared/core/domain.ts';
import { isWasmMirrorError } from '../../../shared/core/errors.ts';
import { loadTrustedKeys, signManifest } from '../../../shared/core/manifest/index.ts';
import { createPublisher } from '../../../shared/core/pipeline/publish.ts';
import { noMetrics, silentLogger, systemClock } from '../../../shared/core/ports.ts';
import { newSigner, payloadOf } from '../../manifest/helpers.ts';

let dir: string;
let keyDir: string;
let keyFile: string;
let pubFile: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'wm-local-key-'));
  keyDir = join(dir, 'private');
  keyFile = join(keyDir, PRIVATE_KEY_FILE);
  pubFile = join(keyDir, PUBLIC_KEY_FILE);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function refusal(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (err) {
    if (isWasmMirrorError(err)) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected the key to be refused');
}

const publicKeyIdIn = (path: string) => loadTrustedKeys(readFileSync(path, 'utf8'))[0]!.keyid;

function writeOtherPrivateKey(path: string): void {
  writeFileSync(path, generateKeyPairPem().privateKeyPem, { mode: 0o600 });
}

describe('a first start', () => {
  it('creates the key (PEM, 0600) and its public half on an empty data directory, then reuses it', async () => {
    // Act / Assess
    const first = await loadOrCreateKey(keyDir);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(keyFile, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(publicKeyIdIn(pubFile)).toBe(await first.keyId());
    const again = await loadOrCreateKey(keyDir, { published: { keyids: [await first.keyId()] } });
    expect(await again.keyId()).toBe(await first.keyId());
    expect(readdirSync(keyDir).sort()).toEqual([PRIVATE_KEY_FILE, PUBLIC_KEY_FILE]);
  });

  it('writes a missing public half back from the private key', async () => {
    // Prepare
    const signer = await loadOrCreateKey(keyDir);
    unlinkSync(pubFile);
    // Act
    await loadOrCreateKey(keyDir, { published: { keyids: [await signer.keyId()] } });
    // Assess
    expect(publicKeyIdIn(pubFile)).toBe(await signer.keyId());
  });
});

describe('a lost key', () => {
  let old: LocalKeySigner;
  beforeEach(async () => {
    old = await loadOrCreateKey(keyDir);
    unlinkSync(keyFile);
  });

  it('is refused with KEY_MISSING when manifests were published, naming the key file and the fix', async () => {
    // Act
    const r = await refusal(loadOrCreateKey(keyDir, { published: { keyids: [await old.keyId()] } }));
    // Assess
    expect(r.code).toBe('KEY_MISSING');
    expect(r.message).toContain(keyFile);
    expect(r.message).toContain(await old.keyId());
    expect(r.message).toContain('--rotate-key');
    expect(existsSync(keyFile)).toBe(false);
    expect(publicKeyIdIn(pubFile)).toBe(await old.keyId());
  });

  it('is refused when the published manifest cannot tell its signer, or only the public file remains', async () => {
    // Act / Assess
    expect((await refusal(loadOrCreateKey(keyDir, { published: { keyids: [] } }))).code).toBe('KEY_MISSING');
    const onlyPublic = await refusal(loadOrCreateKey(keyDir));
    expect(onlyPublic.code).toBe('KEY_MISSING');
    expect(onlyPublic.message).toContain(pubFile);
    expect(existsSync(keyFile)).toBe(false);
  });

  it('is replaced by a new key only when a rotation is asked for, with the public file in step', async () => {
    // Act
    const rotated = await loadOrCreateKey(keyDir, {
      published: { keyids: [await old.keyId()] },
      rotate: true,
    });
    // Assess
    expect(await rotated.keyId()).not.toBe(await old.keyId());
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(publicKeyIdIn(pubFile)).toBe(await rotated.keyId());
    expect(readdirSync(keyDir).sort()).toEqual([PRIVATE_KEY_FILE, PUBLIC_KEY_FILE]);
  });
});

describe('a replaced key', () => {
  it('is refused with KEY_MISMATCH when it did not sign the published manifests, unless rotating', async () => {
    // Prepare
    const old = await loadOrCreateKey(keyDir);
    writeOtherPrivateKey(keyFile);
    rmSync(pubFile); // even with no stale public file to give it away
    const published = { keyids: [await old.keyId()] };
    // Act / Assess
    const r = await refusal(loadOrCreateKey(keyDir, { published }));
    expect(r.code).toBe('KEY_MISMATCH');
    expect(r.message).toContain(keyFile);
    expect(r.message).toContain('--rotate-key');
    const rotated = await loadOrCreateKey(keyDir, { published, rotate: true });
    expect(await rotated.keyId()).not.toBe(await old.keyId());
    expect(publicKeyIdIn(pubFile)).toBe(await rotated.keyId());
  });

  it('is accepted when any signature on the published manifest is by it', async () => {
    // Prepare
    const signer = await loadOrCreateKey(keyDir);
    const published = { keyids: ['00'.repeat(32), await signer.keyId()] };
    // Act / Assess
    expect(await (await loadOrCreateKey(keyDir, { published })).keyId()).toBe(await signer.keyId());
  });
});

describe('the public key file', () => {
  it('is refused with KEY_MISMATCH when it does not match the private key, and rewritten only when rotating', async () => {
    // Prepare
    const signer = await loadOrCreateKey(keyDir);
    const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
    writeFileSync(pubFile, stranger.export({ format: 'pem', type: 'spki' }));
    // Act / Assess
    const r = await refusal(loadOrCreateKey(keyDir));
    expect(r.code).toBe('KEY_MISMATCH');
    expect(r.message).toContain(pubFile);
    expect(r.message).toContain(keyFile);
    await loadOrCreateKey(keyDir, { rotate: true });
    expect(publicKeyIdIn(pubFile)).toBe(await signer.keyId());
  });

  it('is refused when it is not a public key at all', async () => {
    // Prepare
    await loadOrCreateKey(keyDir);
    writeFileSync(pubFile, 'not a key\n');
    // Act / Assess
    expect((await refusal(loadOrCreateKey(keyDir))).code).toBe('KEY_MISMATCH');
  });
});

describe('publishedKeyIds', () => {
  it('reads the keyids off the newest manifest, and tells "none published" from "unreadable"', async () => {
    // Prepare
    const root = join(dir, 'data');
    mkdirSync(root);
    const store = await FsObjectStore.open({ root });
    // Act / Assess
    expect(await publishedKeyIds(store)).toBeUndefined();
    const signer = await loadOrCreateKey(keyDir);
    const signed = await signManifest(payloadOf([]), signer);
    await store.put(storageKeys.latestManifest, signed.bytes, { contentType: 'application/json' });
    expect(await publishedKeyIds(store)).toEqual({ keyids: [await signer.keyId()] });
    await store.put(storageKeys.latestManifest, Buffer.from('{"garbage'), {
      contentType: 'application/json',
    });
    expect(await publishedKeyIds(store)).toEqual({ keyids: [] });
  });

  it('falls back to the highest version when latest.json is gone', async () => {
    // Prepare
    const root = join(dir, 'data');
    mkdirSync(root);
    const store = await FsObjectStore.open({ root });
    const signer = await loadOrCreateKey(keyDir);
    // 10 sorts before 9 as text: the highest version is found by number.
    for (const [version, by] of [
      [10, signer],
      [9, newSigner()],
    ] as const) {
      const signed = await signManifest(payloadOf([], { version }), by);
      await store.create(storageKeys.manifest(version), signed.bytes, { contentType: 'application/json' });
    }
    // Act / Assess
    expect(await publishedKeyIds(store)).toEqual({ keyids: [await signer.keyId()] });
  });

  it('reads a v2-only mirror (no v1 manifests), so a lost key there is refused too', async () => {
    // Prepare: what the publisher writes with legacyManifest off.
    const root = join(dir, 'data');
    mkdirSync(root);
    const store = await FsObjectStore.open({ root });
    const signer = await loadOrCreateKey(keyDir);
    const config = parseConfig('mirror: { name: v2-only, legacyManifest: false }');
    await createPublisher({
      config,
      store,
      signer,
      clock: systemClock,
      logger: silentLogger,
      metrics: noMetrics,
    })([{ kind: 'resign', reason: 'manual' }]);
    // Act
    const published = await publishedKeyIds(store);
    rmSync(keyDir, { recursive: true, force: true });
    const refused = await refusal(loadOrCreateKey(keyDir, { published }));
    // Assess
    expect(await store.head(storageKeys.latestManifest)).toBeUndefined();
    expect(published).toEqual({ keyids: [await signer.keyId()] });
    expect(refused.code).toBe('KEY_MISSING');
  });
});
