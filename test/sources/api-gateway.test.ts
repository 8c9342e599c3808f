import { describe, expect, it } from 'vitest';
import { fromApiGatewayBody } from '../../functions/handlers/webhook.ts';
import { errorCode } from './helpers.ts';

describe('API Gateway bodies', () => {
  it('decodes base64 strictly', () => {
    // Prepare
    const encoded = Buffer.from('{"a":1}').toString('base64');

    // Act
    const decoded = new TextDecoder().decode(fromApiGatewayBody(encoded, true));
    const plain = new TextDecoder().decode(fromApiGatewayBody('{"a":1}', false));
    const absent = fromApiGatewayBody(undefined, false);
    const notBase64 = errorCode(() => fromApiGatewayBody('not base64!', true));

    // Assess
    expect(decoded).toBe('{"a":1}');
    expect(plain).toBe('{"a":1}');
    expect(absent.byteLength).toBe(0);
    expect(notBase64).toBe('WEBHOOK_MALFORMED');
  });
});
