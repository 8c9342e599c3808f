import { describe, expect, it } from 'vitest';
import { parseRetryAfterMs } from '../../shared/core/backoff.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import { defaultAddressGuard, isForbiddenAddress } from '../../shared/core/oci/address-guard.ts';
import { parseChallenge } from '../../shared/core/oci/auth.ts';
import { apiHost, formatReference, parseReference } from '../../shared/core/oci/reference.ts';

const D = `sha256:${'a'.repeat(64)}`;

describe('parseReference', () => {
  it.each([
    [
      'ghcr.io/acme/basic-auth:1.12.0',
      { registry: 'ghcr.io', repository: 'acme/basic-auth', tag: '1.12.0', reference: '1.12.0' },
    ],
    [
      'oci://ghcr.io/acme/basic-auth:1.12.0',
      { registry: 'ghcr.io', repository: 'acme/basic-auth', tag: '1.12.0', reference: '1.12.0' },
    ],
    [`ghcr.io/acme/f@${D}`, { registry: 'ghcr.io', repository: 'acme/f', digest: D, reference: D }],
    [
      `ghcr.io/acme/f:v1@${D}`,
      { registry: 'ghcr.io', repository: 'acme/f', tag: 'v1', digest: D, reference: D },
    ],
    [
      '127.0.0.1:5000/plugins/x',
      { registry: '127.0.0.1:5000', repository: 'plugins/x', tag: 'latest', reference: 'latest' },
    ],
    ['localhost/a/b:c', { registry: 'localhost', repository: 'a/b', tag: 'c', reference: 'c' }],
    ['nginx', { registry: 'docker.io', repository: 'library/nginx', tag: 'latest', reference: 'latest' }],
    ['docker.io/nginx:1', { registry: 'docker.io', repository: 'library/nginx', tag: '1', reference: '1' }],
    ['index.docker.io/acme/x:1', { registry: 'docker.io', repository: 'acme/x', tag: '1', reference: '1' }],
    ['acme/x:1', { registry: 'docker.io', repository: 'acme/x', tag: '1', reference: '1' }],
    ['[::1]:5000/a:b', { registry: '[::1]:5000', repository: 'a', tag: 'b', reference: 'b' }],
    [
      'r.io/a__b/c-d.e_f:T_1.0-x',
      { registry: 'r.io', repository: 'a__b/c-d.e_f', tag: 'T_1.0-x', reference: 'T_1.0-x' },
    ],
  ])('%s', (input, expected) => {
    expect(parseReference(input)).toEqual(expected);
  });

  it.each([
    '',
    'ghcr.io/Acme/x',
    'ghcr.io/acme/x:',
    'ghcr.io/acme/x:-bad',
    `ghcr.io/acme/x:${'t'.repeat(129)}`,
    'ghcr.io/acme/x@sha256:abc',
    `ghcr.io/acme/x@sha512:${'a'.repeat(128)}`,
    'ghcr.io/acme//x',
    'ghcr.io/acme/x..y',
    'ghcr.io/acme/-x',
    'ghcr.io/../x',
    'bad_host.io:99999/x',
    'ghcr.io/a b',
    `r.io/${'a'.repeat(256)}`,
  ])('refuses %j with INVALID_REFERENCE', (input) => {
    // Act
    let err: unknown;
    try {
      parseReference(input);
    } catch (e) {
      err = e;
    }
    // Assess
    expect(isWasmMirrorError(err) && err.code).toBe('INVALID_REFERENCE');
  });

  it('maps Docker Hub to its API host and formats references back', () => {
    // Act / Assess
    expect(apiHost('docker.io')).toBe('registry-1.docker.io');
    expect(apiHost('ghcr.io')).toBe('ghcr.io');
    expect(formatReference({ registry: 'r.io', repository: 'a/b', reference: D })).toBe(`r.io/a/b@${D}`);
    expect(formatReference({ registry: 'r.io', repository: 'a/b', reference: 'v1' })).toBe('r.io/a/b:v1');
  });
});

describe('address guard', () => {
  it.each([
    ['169.254.169.254', true],
    ['169.254.0.1', true],
    ['0.0.0.0', true],
    ['100.100.100.200', true],
    ['fd00:ec2::254', true],
    ['fe80::1', true],
    ['::ffff:169.254.169.254', true],
    ['::ffff:a9fe:a9fe', true],
    ['[::ffff:a9fe:a9fe]', true],
    ['64:ff9b::a9fe:a9fe', true],
    ['64:ff9b::169.254.169.254', true],
    ['2002:a9fe:a9fe::', true],
    ['64:ff9b::a00:1', false],
    ['2002:0a00:0001::1', false],
    ['127.0.0.1', false],
    ['127.0.0.2', false],
    ['10.1.2.3', false],
    ['192.168.1.1', false],
    ['::1', false],
    ['fd00:ec2::253', false],
    ['2001:db8::1', false],
  ])('%s forbidden: %s', (ip, forbidden) => {
    expect(isForbiddenAddress(ip)).toBe(forbidden);
  });

  it('refuses literal metadata URLs and allows loopback names', async () => {
    // Act / Assess
    for (const url of [
      'http://169.254.169.254/latest',
      'http://[fd00:ec2::254]/',
      'http://[::ffff:169.254.169.254]/',
    ]) {
      const err = await defaultAddressGuard(new URL(url)).catch((e: unknown) => e);
      expect(isWasmMirrorError(err) && err.code).toBe('FORBIDDEN_ADDRESS');
    }
    await expect(defaultAddressGuard(new URL('http://127.0.0.1:5000/'))).resolves.toBeUndefined();
    await expect(defaultAddressGuard(new URL('http://localhost:5000/'))).resolves.toBeUndefined();
  });
});

describe('header parsing', () => {
  it('parses Bearer and Basic challenges', () => {
    // Act / Assess
    expect(
      parseChallenge(
        'Bearer realm="https://auth.io/token",service="registry.io",scope="repository:a/b:pull"',
      ),
    ).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://auth.io/token', service: 'registry.io', scope: 'repository:a/b:pull' },
    });
    expect(parseChallenge('Basic realm="x"')).toEqual({ scheme: 'basic', params: { realm: 'x' } });
    expect(parseChallenge('Bearer realm=https://a/t, service=s')).toEqual({
      scheme: 'bearer',
      params: { realm: 'https://a/t', service: 's' },
    });
  });

  it('parses Retry-After as seconds or a date', () => {
    // Prepare
    const now = Date.parse('2026-01-01T00:00:00Z');
    // Act / Assess
    expect(parseRetryAfterMs('7', now)).toBe(7_000);
    expect(parseRetryAfterMs('Thu, 01 Jan 2026 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfterMs('soon', now)).toBeUndefined();
    expect(parseRetryAfterMs(null, now)).toBeUndefined();
  });
});
