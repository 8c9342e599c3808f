import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkAuthorization,
  fromApiGatewayBody,
  globToRegExp,
  hmacMatches,
  hostOf,
  isValidDigest,
  isValidRepository,
  isValidTag,
  parseJsonStrict,
  sameRegistry,
  secretsEqual,
} from '../../shared/core/sources/common.ts';
import { errorCode, request } from './helpers.ts';

describe('strict JSON', () => {
  it('parses what JSON.parse parses', () => {
    const text = '{"a":[1,-2.5e3,true,false,null,"x\\u00e9\\n"],"b":{"c":{}}}';
    expect(JSON.parse(JSON.stringify(parseJsonStrict(text)))).toEqual(JSON.parse(text));
  });

  it.each([
    ['duplicate key', '{"a":1,"a":2}'],
    ['trailing data', '{} {}'],
    ['trailing comma', '{"a":1,}'],
    ['single quotes', "{'a':1}"],
    ['leading zero', '{"a":01}'],
    ['raw control char', '{"a":"\u0001"}'],
    ['unterminated', '{"a":"x'],
    ['empty', ''],
    ['too deep', `${'['.repeat(40)}${']'.repeat(40)}`],
    ['NaN', '{"a":NaN}'],
    ['huge number', '{"a":1e999}'],
  ])('rejects %s', (_name, text) => {
    expect(errorCode(() => parseJsonStrict(text))).toBe('WEBHOOK_MALFORMED');
  });

  it('rejects invalid UTF-8', () => {
    expect(errorCode(() => parseJsonStrict(new Uint8Array([0x22, 0xff, 0x22])))).toBe('WEBHOOK_MALFORMED');
  });

  it('accepts a leading UTF-8 BOM and lone surrogates in strings', () => {
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"a":1}')]);
    expect(parseJsonStrict(bom)).toEqual({ a: 1 });
    expect(parseJsonStrict('{"d":"\\ud800"}')).toEqual({ d: '\ud800' });
  });

  it('keeps __proto__ as plain data', () => {
    const v = parseJsonStrict('{"__proto__":{"polluted":true}}') as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBeNull();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('secrets', () => {
  it('compares in constant time over hashes, empty expected never matches', () => {
    expect(secretsEqual('s3cret', 's3cret')).toBe(true);
    expect(secretsEqual('s3cret', 's3cre')).toBe(false);
    expect(secretsEqual(undefined, 's3cret')).toBe(false);
    expect(secretsEqual('', '')).toBe(false);
  });

  it('checks HMAC-SHA256 of the raw bytes', () => {
    const body = new TextEncoder().encode('{"a": 1}');
    const mac = createHmac('sha256', 'k').update(body).digest('hex');
    expect(hmacMatches('k', body, mac)).toBe(true);
    expect(hmacMatches('k', body, mac.toUpperCase())).toBe(true);
    expect(hmacMatches('k', new TextEncoder().encode('{"a":1}'), mac)).toBe(false);
    expect(hmacMatches('', body, mac)).toBe(false);
  });

  it('accepts Bearer, and the bare value only when allowed', () => {
    expect(() => checkAuthorization(request('', { Authorization: 'Bearer tok' }), 'tok')).not.toThrow();
    expect(() => checkAuthorization(request('', { authorization: 'bearer  tok' }), 'tok')).not.toThrow();
    expect(errorCode(() => checkAuthorization(request('', { authorization: 'tok' }), 'tok'))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
    expect(() =>
      checkAuthorization(request('', { authorization: 'tok' }), 'tok', { allowBare: true }),
    ).not.toThrow();
    expect(errorCode(() => checkAuthorization(request('', {}), 'tok'))).toBe('WEBHOOK_UNAUTHENTICATED');
    expect(errorCode(() => checkAuthorization(request('', { authorization: 'Bearer ' }), ''))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });
});

describe('API Gateway bodies', () => {
  it('decodes base64 strictly', () => {
    expect(
      new TextDecoder().decode(fromApiGatewayBody(Buffer.from('{"a":1}').toString('base64'), true)),
    ).toBe('{"a":1}');
    expect(new TextDecoder().decode(fromApiGatewayBody('{"a":1}', false))).toBe('{"a":1}');
    expect(fromApiGatewayBody(undefined, false).byteLength).toBe(0);
    expect(errorCode(() => fromApiGatewayBody('not base64!', true))).toBe('WEBHOOK_MALFORMED');
  });
});

describe('OCI grammar', () => {
  it.each(['plugins/basic-auth', 'a', 'a/b/c', 'a__b', 'a.b-c', 'a--b'])('accepts repository %s', (n) => {
    expect(isValidRepository(n)).toBe(true);
  });
  it.each(['Plugins/x', '', '/a', 'a/', 'a//b', '-a', 'a_', 'a:b', '../x', 'a b', 'a/'.repeat(200) + 'a'])(
    'rejects repository %s',
    (n) => {
      expect(isValidRepository(n)).toBe(false);
    },
  );
  it('validates tags and digests', () => {
    expect(isValidTag('v1.2.3_rc-1')).toBe(true);
    expect(isValidTag('-x')).toBe(false);
    expect(isValidTag('a'.repeat(129))).toBe(false);
    expect(isValidTag('a:b')).toBe(false);
    expect(isValidDigest(`sha256:${'a'.repeat(64)}`)).toBe(true);
    expect(isValidDigest(`sha256:${'A'.repeat(64)}`)).toBe(false);
    expect(isValidDigest(`sha512:${'a'.repeat(128)}`)).toBe(false);
  });
});

describe('allow-list globs', () => {
  it.each([
    ['plugins/**', 'plugins/a', true],
    ['plugins/**', 'plugins/a/b', true],
    ['plugins/**', 'plugins', false],
    ['plugins/**', 'pluginsx/a', false],
    ['plugins/*', 'plugins/a', true],
    ['plugins/*', 'plugins/a/b', false],
    ['acme/*-filter', 'acme/jwt-filter', true],
    ['**/filters/*', 'a/b/filters/x', true],
    ['**/filters/*', 'filters/x', true],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['a.b/*', 'aXb/c', false],
    ['exact/name', 'exact/name', true],
  ])('%s vs %s → %s', (glob, name, expected) => {
    expect(globToRegExp(glob).test(name)).toBe(expected);
  });
});

describe('registry host', () => {
  it.each([
    ['127.0.0.1:5000', '127.0.0.1:5000', true],
    ['127.0.0.1:5000', 'localhost:5000', true],
    ['127.0.0.1:5000', 'localhost:5001', false],
    ['Registry.Example.com', 'registry.example.com', true],
    ['registry.example.com', 'registry.example.com:443', true],
    ['registry.example.com', 'evil.example.com', false],
    ['docker.io', 'registry-1.docker.io', true],
    ['ghcr.io', 'docker.io', false],
    ['[::1]:5000', 'localhost:5000', true],
  ])('%s vs %s → %s', (a, b, expected) => {
    expect(sameRegistry(a, b)).toBe(expected);
  });

  it('finds the host of URLs and references', () => {
    expect(hostOf('https://ghcr.io/v2/x/manifests/y')).toBe('ghcr.io');
    expect(hostOf('localhost/harbor/alpine:1')).toBe('localhost');
    expect(hostOf('harbor.example.com:8443/p/r@sha256:ab')).toBe('harbor.example.com:8443');
    expect(hostOf('library/alpine')).toBeUndefined();
  });
});
