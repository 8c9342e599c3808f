/**
 * CloudFormation custom resource: writes keys.json from the KMS public keys on create and update,
 * then queues a startup re-sign so a fresh deployment has a signed manifest without waiting for
 * the schedule. Called by CloudFormation directly (no provider framework), so it answers on the
 * pre-signed ResponseURL itself, always, even when the runtime cannot be built.
 */

import { Logger } from '@aws-lambda-powertools/logger';
import type { CloudFormationCustomResourceEvent, Context } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/core/errors.ts';
import { writeKeysJson } from '../../shared/core/pipeline/publish.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
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
        // The publisher writes manifest 1 (or re-signs a stale one; a fresh one is left as it is).
        // Same message group as the schedule's re-signs; deduplicated by request id, so a retried
        // invocation for the same request queues one message, not two.
        const startup: PublishRequest = { kind: 'resign', reason: 'startup' };
        await deps.publishQueue.send(startup, { dedupeId: `startup-${event.RequestId}` });
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

export type KeysResourceHandler = (
  event: CloudFormationCustomResourceEvent,
  context: Context,
) => Promise<void>;

/**
 * The entry point's handler: builds the runtime on the first invocation, inside the handler, so a
 * failure there (a missing variable, an unreadable config file) is answered as FAILED with its
 * reason instead of failing the cold start, which CloudFormation would only notice at the
 * resource's service timeout. A successful build is kept for the container's later invocations;
 * a failed one is tried again next time.
 */
export function createLazyKeysResourceHandler(
  build: () => Promise<AwsRuntime>,
  send: ResponseSender = putResponse,
): KeysResourceHandler {
  let handler: Promise<KeysResourceHandler> | undefined;
  return async (event, context) => {
    // Through a promise, so a build that throws synchronously is caught below too.
    handler ??= Promise.resolve()
      .then(build)
      .then((runtime) => createKeysResourceHandler(runtime, send));
    let ready: KeysResourceHandler;
    try {
      ready = await handler;
    } catch (err) {
      handler = undefined;
      const e = toWasmMirrorError(err);
      new Logger({ serviceName: 'wasm-mirror' }).error('keys function could not start', { error: e });
      // Delete writes nothing (keys.json stays with the retained bucket), so it succeeds even
      // now: a stack being deleted or rolled back is never stuck on this resource.
      const deleting = event.RequestType === 'Delete';
      await send(event.ResponseURL, {
        Status: deleting ? 'SUCCESS' : 'FAILED',
        ...(deleting ? {} : { Reason: `${e.code}: ${e.message} (log stream ${context.logStreamName})` }),
        PhysicalResourceId:
          'PhysicalResourceId' in event ? event.PhysicalResourceId : `keys-json-${event.LogicalResourceId}`,
        StackId: event.StackId,
        RequestId: event.RequestId,
        LogicalResourceId: event.LogicalResourceId,
      });
      return;
    }
    await ready(event, context);
  };
}

async function putResponse(url: string, body: CustomResourceResponse): Promise<void> {
  const text = JSON.stringify(body);
  // The pre-signed URL is signed for an empty content type.
  const res = await fetch(url, { method: 'PUT', body: text, headers: { 'content-type': '' } });
  if (!res.ok) throw new Error(`CloudFormation response PUT answered ${res.status}`);
}
