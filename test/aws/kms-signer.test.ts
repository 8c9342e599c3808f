import { execFileSync } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KmsSigner } from '../../functions/adapters/kms-signer.ts';
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

  it('signs a SHA-256 digest in DIGEST mode; openssl verifies the DER signature over the message', async () => {
    const signer = new KmsSigner({ keyId: kms.keyArn, client });
    const message = Buffer.from('DSSEv1 45 application/vnd.wasm-mirror.manifest.v1+json 2 {}');
    const digest = createHash('sha256').update(message).digest();
    const sig = await signer.signDigest(digest);
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
    const signer = new KmsSigner({ keyId: kms.keyId, client });
    const before = kms.calls.filter((c) => c.target === 'TrentService.GetPublicKey').length;
    const spki = await signer.publicKeySpki();
    const id = await signer.keyId();
    await signer.publicKeySpki();
    expect(kms.calls.filter((c) => c.target === 'TrentService.GetPublicKey').length).toBe(before + 1);
    expect(Buffer.from(spki)).toEqual(kms.publicKey.export({ type: 'spki', format: 'der' }));
    expect(id).toBe(createHash('sha256').update(spki).digest('hex'));
    const digest = createHash('sha256').update('x').digest();
    const sig = await signer.signDigest(digest);
    expect(
      verify('sha256', Buffer.from('x'), { key: Buffer.from(spki), format: 'der', type: 'spki' }, sig),
    ).toBe(true);
  });

  it('refuses anything but a 32-byte digest and maps KMS errors to SIGNING_FAILURE', async () => {
    const signer = new KmsSigner({ keyId: kms.keyId, client });
    await expect(signer.signDigest(new Uint8Array(31))).rejects.toMatchObject({ code: 'SIGNING_FAILURE' });
    const unknown = new KmsSigner({ keyId: 'alias/nope', client });
    await expect(unknown.signDigest(new Uint8Array(32))).rejects.toMatchObject({ code: 'SIGNING_FAILURE' });
    await expect(unknown.publicKeySpki()).rejects.toMatchObject({ code: 'SIGNING_FAILURE' });
  });
});
