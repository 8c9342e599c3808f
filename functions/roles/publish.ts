/**
 * The publish function's composition root: the bucket, the KMS signing key and the registry view
 * it writes after each version, nothing else.
 */
import { KMSClient } from '@aws-sdk/client-kms';
import { KmsSigner } from '../adapters/kms-signer.ts';
import { S3RegistryObjects } from '../adapters/s3-registry-objects.ts';
import type { FunctionEnv } from '../config.ts';
import { type AwsRuntime, composeRuntime, type RuntimeOverrides } from '../runtime.ts';

export function createPublishRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides = {},
): Promise<AwsRuntime> {
  return composeRuntime(env, overrides, ({ clientConfig, traced }) => {
    const kms = overrides.kms ?? traced(new KMSClient(clientConfig));
    return {
      signerFor: (keyId) => new KmsSigner({ keyId, client: kms }),
      registry: ({ client, name }) => new S3RegistryObjects({ client, bucket: name }),
    };
  });
}
