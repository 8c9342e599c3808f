/**
 * CloudFormation custom resource: writes keys.json from the KMS public keys on create and update.
 * Called by CloudFormation directly (no provider framework), so it answers on the pre-signed
 * ResponseURL itself, always, or the stack would wait an hour for it.
 */
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/errors.ts';
import { writeKeysJson } from '../../shared/pipeline/publish.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';

export interface CustomResourceResponse {
  Status: 'SUCCESS' | 'FAILED';
  Reason?: string;
  PhysicalResourceId: string;
  StackId: string;
  RequestId: string;
  LogicalResourceId: string;
  Data?: Record<string, string>;
}

export type ResponseSender = (url: string, body: CustomResourceResponse) => Promise<void>;

export function createKeysResourceHandler(runtime: AwsRuntime, send: ResponseSender = putResponse) {
  const { deps } = runtime;
  const { logger } = runtime.powertools;

  const handle = async (event: CloudFormationCustomResourceEvent, context: Context): Promise<void> => {
    const physicalId =
      'PhysicalResourceId' in event ? event.PhysicalResourceId : `keys-json-${deps.config.mirror.name}`;
    const base = {
      PhysicalResourceId: physicalId,
      StackId: event.StackId,
      RequestId: event.RequestId,
      LogicalResourceId: event.LogicalResourceId,
    };
    let response: CustomResourceResponse;
    try {
      // keys.json stays on delete: the bucket is retained and agents may still read it.
      if (event.RequestType !== 'Delete') {
        // Every published key, in generation order; a key already listed is left as it is.
        for (const keyId of runtime.env.publishedKeyIds) {
          const signer = keyId === runtime.env.signingKeyId ? deps.signer : runtime.signerFor(keyId);
          await writeKeysJson({ ...deps, signer });
        }
      }
      const keyId = event.RequestType === 'Delete' ? '' : await deps.signer.keyId();
      response = { ...base, Status: 'SUCCESS', Data: { KeyId: keyId } };
    } catch (err) {
      const e = toWasmMirrorError(err);
      logger.error('writing keys.json failed', { error: e });
      response = {
        ...base,
        Status: 'FAILED',
        Reason: `${e.code}: ${e.message} (log stream ${context.logStreamName})`,
      };
    }
    await send(event.ResponseURL, response);
  };
  return withPowertools(handle, runtime.powertools);
}

async function putResponse(url: string, body: CustomResourceResponse): Promise<void> {
  const text = JSON.stringify(body);
  // The pre-signed URL is signed for an empty content type.
  const res = await fetch(url, { method: 'PUT', body: text, headers: { 'content-type': '' } });
  if (!res.ok) throw new Error(`CloudFormation response PUT answered ${res.status}`);
}
