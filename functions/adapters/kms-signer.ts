/**
 * Signer on an asymmetric KMS key (ECC_NIST_P256, SIGN_VERIFY). The adapter hashes the message
 * (the DSSE PAE) itself and KMS signs the digest (`MessageType: DIGEST`), so the payload never
 * leaves the function and any size is signable (RAW messages are capped at 4 KiB). KMS returns
 * DER signatures and SPKI DER public keys, which is exactly the format the manifest uses.
 */
import { createHash } from 'node:crypto';
import { GetPublicKeyCommand, KMSClient, type KMSClientConfig, SignCommand } from '@aws-sdk/client-kms';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type { Signer } from '../../shared/core/ports.ts';
import { wrapSdkError } from './aws-errors.ts';

export interface KmsSignerOptions {
  /** Key id, ARN or alias. */
  keyId: string;
  client?: KMSClient;
  clientConfig?: KMSClientConfig;
}

export class KmsSigner implements Signer {
  readonly keyIdOrArn: string;
  readonly client: KMSClient;
  /** The public key never changes for a key id, so one GetPublicKey per container is enough. */
  private spki: Promise<Uint8Array> | undefined;

  constructor(options: KmsSignerOptions) {
    this.keyIdOrArn = options.keyId;
    this.client = options.client ?? new KMSClient(options.clientConfig ?? {});
  }

  publicKeySpki(): Promise<Uint8Array> {
    this.spki ??= this.fetchPublicKey().catch((err: unknown) => {
      this.spki = undefined;
      throw err;
    });
    return this.spki;
  }

  async keyId(): Promise<string> {
    return createHash('sha256')
      .update(await this.publicKeySpki())
      .digest('hex');
  }

  async sign(message: Uint8Array): Promise<Uint8Array> {
    const digest = createHash('sha256').update(message).digest();
    try {
      const out = await this.client.send(
        new SignCommand({
          KeyId: this.keyIdOrArn,
          Message: digest,
          MessageType: 'DIGEST',
          SigningAlgorithm: 'ECDSA_SHA_256',
        }),
      );
      if (!out.Signature) throw new WasmMirrorError('SIGNING_FAILURE', 'KMS Sign returned no signature');
      return out.Signature;
    } catch (err) {
      throw wrapSdkError('SIGNING_FAILURE', `KMS Sign with ${this.keyIdOrArn}`, err);
    }
  }

  private async fetchPublicKey(): Promise<Uint8Array> {
    try {
      const out = await this.client.send(new GetPublicKeyCommand({ KeyId: this.keyIdOrArn }));
      if (!out.PublicKey) throw new WasmMirrorError('SIGNING_FAILURE', 'KMS GetPublicKey returned no key');
      if (out.KeySpec !== undefined && out.KeySpec !== 'ECC_NIST_P256') {
        throw new WasmMirrorError(
          'SIGNING_FAILURE',
          `KMS key spec is ${out.KeySpec}, expected ECC_NIST_P256`,
        );
      }
      return out.PublicKey;
    } catch (err) {
      throw wrapSdkError('SIGNING_FAILURE', `KMS GetPublicKey ${this.keyIdOrArn}`, err);
    }
  }
}
