/** The publish function's composition root: the bucket and the KMS signing key, nothing else. */
import { KMSClient } from '@aws-sdk/client-kms';
import { KmsSigner } from '../adapters/kms-signer.ts';
import type { FunctionEnv } from '../config.ts';
import { type AwsRuntime, composeRuntime, type RuntimeOverrides } from '../runtime.ts';

export function createPublishRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides = {},
): Promise<AwsRuntime> {
  return composeRuntime(env, overrides, ({ clientConfig, traced }) => {
    const kms = overrides.kms ?? traced(new KMSClient(clientConfig));
    return { signerFor: (keyId) => new KmsSigner({ keyId, client: kms }) };
  });
}
