import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  authenticate,
  checkStaticHeader,
  hmacMatches,
  secretsEqual,
} from '../../shared/core/sources/auth.ts';
import type { SenderAuth } from '../../shared/core/sources/types.ts';
import { outcome, request, source } from './helpers.ts';

const UNAUTHENTICATED = 'WEBHOOK_UNAUTHENTICATED';

describe('secrets', () => {
  it('compares in constant time over hashes, empty expected never matches', () => {
    // Act
    const results = [
      secretsEqual('s3cret', 's3cret'),
      secretsEqual('s3cret', 's3cre'),
      secretsEqual(undefined, 's3cret'),
      secretsEqual('', ''),
    ];

    // Assess
    expect(results).toEqual([true, false, false, false]);
  });

  it('checks HMAC-SHA256 of the raw bytes', () => {
    // Prepare
    const body = new TextEncoder().encode('{"a": 1}');
    const mac = createHmac('sha256', 'k').update(body).digest('hex');

    // Act
    const results = [
      hmacMatches('k', body, mac),
      hmacMatches('k', body, mac.toUpperCase()),
      hmacMatches('k', new TextEncoder().encode('{"a":1}'), mac),
      hmacMatches('', body, mac),
    ];

    // Assess
    expect(results).toEqual([true, true, false, false]);
  });

  it('accepts Bearer, and the bare value only when allowed', () => {
    // Prepare
    const check = (headers: Record<string, string>, secret: string, bare = false) =>
      outcome(() => checkStaticHeader(request('', headers), secret, { bare }));

    // Act
    const bearer = check({ Authorization: 'Bearer tok' }, 'tok');
    const lowercaseScheme = check({ authorization: 'bearer  tok' }, 'tok');
    const bareRefused = check({ authorization: 'tok' }, 'tok');
    const bareAllowed = check({ authorization: 'tok' }, 'tok', true);
    const missing = check({}, 'tok');
    const noSecret = check({ authorization: 'Bearer ' }, '');

    // Assess
    expect(bearer).toBe('ok');
    expect(lowercaseScheme).toBe('ok');
    expect(bareRefused).toBe(UNAUTHENTICATED);
    expect(bareAllowed).toBe('ok');
    expect(missing).toBe(UNAUTHENTICATED);
    expect(noSecret).toBe(UNAUTHENTICATED);
  });
});

describe('sender authentication', () => {
  it('checks a body HMAC over the raw bytes, whether or not they are JSON', () => {
    // Prepare
    const auth: SenderAuth = {
      kind: 'body-hmac',
      header: 'x-signature',
      signature: /^sha256=([0-9a-f]{64})$/,
    };
    const body = 'not even JSON';
    const sign = (text: string) => `sha256=${createHmac('sha256', 'k').update(text).digest('hex')}`;
    const check = (signature: string) =>
      outcome(() => authenticate(auth, source('github'), 'k', request(body, { 'x-signature': signature })));

    // Act
    const signed = check(sign(body));
    const otherBytes = check(sign(`${body} `));
    const theSecretItself = check('k');

    // Assess
    expect(signed).toBe('ok');
    expect(otherBytes).toBe(UNAUTHENTICATED);
    expect(theSecretItself).toBe(UNAUTHENTICATED);
  });

  it("reads a static secret from the source's header only when the sender says so", () => {
    // Prepare
    const custom = source('acr', { webhookHeader: 'X-Token' });
    const fromSource: SenderAuth = { kind: 'static-header', bare: true, sourceHeader: true };
    const fixed: SenderAuth = { kind: 'static-header', bare: true };
    const req = request('', { 'x-token': 'k' });

    // Act
    const sourceHeader = outcome(() => authenticate(fromSource, custom, 'k', req));
    const fixedHeader = outcome(() => authenticate(fixed, custom, 'k', req));

    // Assess
    expect(sourceHeader).toBe('ok');
    expect(fixedHeader).toBe(UNAUTHENTICATED);
  });

  it('takes a path token only when it is the secret', () => {
    // Prepare
    const auth: SenderAuth = { kind: 'path-token' };
    const check = (pathToken?: string) =>
      outcome(() =>
        authenticate(
          auth,
          source('quay'),
          'k',
          request('', {}, pathToken === undefined ? {} : { pathToken }),
        ),
      );

    // Act
    const right = check('k');
    const wrong = check('x');
    const none = check();

    // Assess
    expect(right).toBe('ok');
    expect(wrong).toBe(UNAUTHENTICATED);
    expect(none).toBe(UNAUTHENTICATED);
  });
});
