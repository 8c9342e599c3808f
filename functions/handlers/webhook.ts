/**
 * API Gateway HTTP API (payload v2) → the shared webhook receiver. `POST /hooks/{sourceId}` and
 * `POST /hooks/{sourceId}/{token}` (senders that can only authenticate by URL).
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2, Context } from 'aws-lambda';
import { toWasmMirrorError, WasmMirrorError } from '../../shared/core/errors.ts';
import type { AwsRuntime } from '../runtime.ts';
import { withPowertools } from './middleware.ts';

export function createWebhookHandler(runtime: AwsRuntime) {
  const receive = runtime.app.receiveWebhook;
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

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Raw body bytes from an API Gateway event. Binary and some text payloads arrive base64-encoded;
 * HMACs must be checked over the decoded bytes, so decoding is strict (no silent skipping).
 */
export function fromApiGatewayBody(body: string | null | undefined, isBase64Encoded: boolean): Uint8Array {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (!isBase64Encoded) return new Uint8Array(Buffer.from(body, 'utf8'));
  if (!BASE64.test(body)) throw new WasmMirrorError('WEBHOOK_MALFORMED', 'body is not valid base64');
  return new Uint8Array(Buffer.from(body, 'base64'));
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
