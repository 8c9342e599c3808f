/**
 * A stand-in for AWS KMS that speaks its JSON protocol (`X-Amz-Target: TrentService.*`) on
 * 127.0.0.1, so the real @aws-sdk/client-kms runs against it. It holds one P-256 key and signs
 * the way KMS does for `MessageType: DIGEST`: ECDSA over the given 32 bytes, DER-encoded. Node's
 * crypto cannot sign a precomputed digest, so OpenSSL's pkeyutl does that part.
 */
import { execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KmsStandIn {
  endpoint: string;
  keyId: string;
  keyArn: string;
  publicKey: KeyObject;
  /** PEM file of the public key, for `openssl dgst -verify`. */
  publicKeyPemPath: string;
  calls: { target: string; body: Record<string, unknown> }[];
  stop(): Promise<void>;
}

export async function startKmsStandIn(): Promise<KmsStandIn> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const dir = mkdtempSync(join(tmpdir(), 'kms-stand-in-'));
  const privatePem = join(dir, 'key.pem');
  const publicKeyPemPath = join(dir, 'pub.pem');
  writeFileSync(privatePem, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(publicKeyPemPath, publicKey.export({ type: 'spki', format: 'pem' }));
  const keyId = '1234abcd-12ab-34cd-56ef-1234567890ab';
  const keyArn = `arn:aws:kms:us-east-1:000000000000:key/${keyId}`;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const calls: KmsStandIn['calls'] = [];

  const handle = (target: string, body: Record<string, unknown>): [number, unknown] => {
    if (body.KeyId !== keyId && body.KeyId !== keyArn) {
      return [400, { __type: 'NotFoundException', message: `Key '${String(body.KeyId)}' does not exist` }];
    }
    if (target === 'TrentService.GetPublicKey') {
      return [
        200,
        {
          KeyId: keyArn,
          PublicKey: spki.toString('base64'),
          KeySpec: 'ECC_NIST_P256',
          KeyUsage: 'SIGN_VERIFY',
          SigningAlgorithms: ['ECDSA_SHA_256'],
        },
      ];
    }
    if (target === 'TrentService.Sign') {
      if (body.SigningAlgorithm !== 'ECDSA_SHA_256') {
        return [400, { __type: 'ValidationException', message: 'unsupported SigningAlgorithm' }];
      }
      const message = Buffer.from(String(body.Message), 'base64');
      let digest: Buffer;
      if (body.MessageType === 'DIGEST') {
        if (message.length !== 32) return [400, { __type: 'ValidationException', message: 'digest length' }];
        digest = message;
      } else {
        digest = createHash('sha256').update(message).digest();
      }
      const signature = execFileSync('openssl', ['pkeyutl', '-sign', '-inkey', privatePem], {
        input: digest,
      });
      return [
        200,
        { KeyId: keyArn, Signature: signature.toString('base64'), SigningAlgorithm: 'ECDSA_SHA_256' },
      ];
    }
    return [400, { __type: 'UnsupportedOperationException', message: `${target} is not implemented` }];
  };

  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const target = String(req.headers['x-amz-target'] ?? '');
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
      } catch {
        // an unparseable body is answered like any other bad request below
      }
      calls.push({ target, body });
      const [status, out] = handle(target, body);
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(out));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    keyId,
    keyArn,
    publicKey,
    publicKeyPemPath,
    calls,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
