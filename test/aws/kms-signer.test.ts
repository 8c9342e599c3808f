import { execFileSync } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsSigner } from '../../functions/adapters/kms-signer.ts';
import { signManifest, trustedKeyFrom, verifyManifest } from '../../shared/core/manifest/index.ts';
import { moduleEntry, payloadOf, T0 } from '../manifest/helpers.ts';
import { webCryptoVerifies } from '../manifest/webcrypto.ts';
import { TEST_CREDENTIALS } from './support/fauxqs.ts';
import { type KmsStandIn, startKmsStandIn } from './support/kms-stand-in.ts';

describe('KmsSigner through @aws-sdk/client-kms against the KMS stand-in', () => {
  let kms: KmsStandIn;
  let client: KMSClient;
  let dir: string;

  beforeAll(async () => {
    kms = await startKmsStandIn();
    client = new KMSClient({ endpoint: kms.endpoint, region: 'us-east-1', credentials: TEST_CREDENTIALS });
    dir = mkdtempSync(join(tmpdir(), 'kms-signer-'));
  });
  afterAll(async () => {
    client?.destroy();
    await kms?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('hashes the message and has KMS sign the digest (DIGEST mode); openssl verifies over the message', async () => {
    // Prepare
    const signer = new KmsSigner({ keyId: kms.keyArn, client });
    const message = Buffer.from('DSSEv1 45 application/vnd.wasm-mirror.manifest.v1+json 2 {}');
    const digest = createHash('sha256').update(message).digest();
    // Act
    const sig = await signer.sign(message);
    // Assess
    const sign = kms.calls.findLast((c) => c.target === 'TrentService.Sign')!;
    expect(sign.body).toMatchObject({
      MessageType: 'DIGEST',
      SigningAlgorithm: 'ECDSA_SHA_256',
      KeyId: kms.keyArn,
    });
    expect(Buffer.from(String(sign.body.Message), 'base64')).toEqual(digest);

    const msgPath = join(dir, 'msg');
    const sigPath = join(dir, 'sig');
    writeFileSync(msgPath, message);
    writeFileSync(sigPath, sig);
    const out = execFileSync('openssl', [
      'dgst',
      '-sha256',
      '-verify',
      kms.publicKeyPemPath,
      '-signature',
      sigPath,
      msgPath,
    ]);
    expect(out.toString()).toContain('Verified OK');
  });

  it('returns the SPKI DER public key, its keyid, and asks KMS only once per container', async () => {
    // Prepare
    const signer = new KmsSigner({ keyId: kms.keyId, client });
    const before = kms.calls.filter((c) => c.target === 'TrentService.GetPublicKey').length;
    // Act
    const spki = await signer.publicKeySpki();
    const id = await signer.keyId();
    await signer.publicKeySpki();
    // Assess
    expect(kms.calls.filter((c) => c.target === 'TrentService.GetPublicKey').length).toBe(before + 1);
    expect(Buffer.from(spki)).toEqual(kms.publicKey.export({ type: 'spki', format: 'der' }));
    expect(id).toBe(createHash('sha256').update(spki).digest('hex'));
    const sig = await signer.sign(Buffer.from('x'));
    expect(
      verify('sha256', Buffer.from('x'), { key: Buffer.from(spki), format: 'der', type: 'spki' }, sig),
    ).toBe(true);
  });

  it('signs messages beyond the 4 KiB KMS takes in RAW mode: only the 32-byte digest is sent', async () => {
    // Prepare
    const signer = new KmsSigner({ keyId: kms.keyId, client });
    const message = new Uint8Array(64 * 1024).fill(0x61);
    // Act
    const sig = await signer.sign(message);
    // Assess
    const sign = kms.calls.findLast((c) => c.target === 'TrentService.Sign')!;
    expect(sign.body.MessageType).toBe('DIGEST');
    expect(Buffer.from(String(sign.body.Message), 'base64')).toEqual(
      createHash('sha256').update(message).digest(),
    );
    expect(verify('sha256', message, kms.publicKey, sig)).toBe(true);
  });

  it('signs a manifest that the verifier and WebCrypto both accept', async () => {
    // Prepare
    const signer = new KmsSigner({ keyId: kms.keyArn, client });
    const payload = payloadOf([moduleEntry('ghcr.io/acme/basic-auth', new Uint8Array([0, 97, 115, 109]))]);
    // Act
    const signed = await signManifest(payload, signer);
    // Assess
    const trustedKeys = [trustedKeyFrom(await signer.publicKeySpki())];
    const now = new Date(T0.getTime() + 60_000);
    expect(verifyManifest(signed.bytes, { trustedKeys, now, mirrorName: 'prod-mesh' }).payload).toEqual(
      payload,
    );
    expect(await webCryptoVerifies(signed.envelope, await signer.publicKeySpki())).toBe(true);
  });

  it('maps KMS errors to SIGNING_FAILURE', async () => {
    // Prepare
    const unknown = new KmsSigner({ keyId: 'alias/nope', client });
    // Act / Assess
    await expect(unknown.sign(new Uint8Array(32))).rejects.toMatchObject({ code: 'SIGNING_FAILURE' });
    await expect(unknown.publicKeySpki()).rejects.toMatchObject({ code: 'SIGNING_FAILURE' });
  });
});
