/**
 * API Gateway HTTP API (payload v2) → the shared webhook receiver. `POST /hooks/{sourceId}` and
 * `POST /hooks/{sourceId}/{token}` (senders that can only authenticate by URL).
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { toWasmMirrorError } from '../../shared/core/errors.ts';
import { createWebhookReceiver } from '../../shared/core/pipeline/receive.ts';
import { fromApiGatewayBody } from '../../shared/core/sources/index.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';

export function createWebhookHandler(runtime: AwsRuntime) {
  const receive = createWebhookReceiver(runtime.deps);
  const { logger } = runtime.powertools;

  const handle = async (
    event: APIGatewayProxyEventV2,
    _context: Context,
  ): Promise<APIGatewayProxyStructuredResultV2> => {
    const sourceId = event.pathParameters?.sourceId;
    if (event.requestContext?.http?.method !== 'POST' || !sourceId) {
      return json(404, { code: 'NOT_FOUND', message: 'POST /hooks/{sourceId}' });
    }
    let body: Uint8Array;
    try {
      body = fromApiGatewayBody(event.body, event.isBase64Encoded);
    } catch (err) {
      const e = toWasmMirrorError(err, 'WEBHOOK_MALFORMED');
      return json(400, { code: e.code, message: e.message });
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(event.headers ?? {})) {
      if (value !== undefined) headers[name.toLowerCase()] = value;
    }
    const token = event.pathParameters?.token;
    try {
      const res = await receive({ sourceId, headers, body, ...(token ? { pathToken: token } : {}) });
      return json(res.status, res.body, res.headers);
    } catch (err) {
      // Registries retry 5xx, which is what an unexpected failure should get.
      const e = toWasmMirrorError(err);
      logger.error('webhook failed', { sourceId, code: e.code, error: e });
      return json(500, { code: 'INTERNAL', message: 'internal error' });
    }
  };
  return withPowertools(handle, runtime.powertools);
}

function json(
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): APIGatewayProxyStructuredResultV2 {
  return {
    statusCode: status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify(body),
  };
}
