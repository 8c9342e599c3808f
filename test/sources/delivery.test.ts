import { describe, expect, it } from 'vitest';
import { SHA256_DIGEST } from '../../shared/core/domain.ts';
import { isValidRepository, isValidTag } from '../../shared/core/oci/reference.ts';
import { DeliveryBuilder, hostOf, sameRegistry } from '../../shared/core/sources/delivery.ts';
import { reasons, request, source } from './helpers.ts';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('OCI grammar of a candidate', () => {
  it.each(['plugins/basic-auth', 'a', 'a/b/c', 'a__b', 'a.b-c', 'a--b'])('accepts repository %s', (n) => {
    // Act
    const valid = isValidRepository(n);

    // Assess
    expect(valid).toBe(true);
  });

  it.each(['Plugins/x', '', '/a', 'a/', 'a//b', '-a', 'a_', 'a:b', '../x', 'a b', 'a/'.repeat(200) + 'a'])(
    'rejects repository %s',
    (n) => {
      // Act
      const valid = isValidRepository(n);

      // Assess
      expect(valid).toBe(false);
    },
  );

  it('validates tags and digests', () => {
    // Act
    const tags = [
      isValidTag('v1.2.3_rc-1'),
      isValidTag('-x'),
      isValidTag('a'.repeat(129)),
      isValidTag('a:b'),
    ];
    const digests = [
      SHA256_DIGEST.test(`sha256:${'a'.repeat(64)}`),
      SHA256_DIGEST.test(`sha256:${'A'.repeat(64)}`),
      SHA256_DIGEST.test(`sha512:${'a'.repeat(128)}`),
    ];

    // Assess
    expect(tags).toEqual([true, false, false, false]);
    expect(digests).toEqual([true, false, false]);
  });

  it('ignores a candidate whose name, tag or digest breaks the grammar', () => {
    // Prepare
    const out = new DeliveryBuilder(source('distribution'), request(''));

    // Act
    const added = [
      out.add({ repository: 'plugins/Bad', tag: '1' }),
      out.add({ repository: 'plugins/ok', tag: '-bad' }),
      out.add({ repository: 'plugins/ok', digest: 'sha512:abc' }),
      out.add({ repository: 'plugins/ok', tag: 'sha256:xyz' }),
      out.add({ repository: 'plugins/ok', tag: 'good', digest: DIGEST }),
    ];

    // Assess
    expect(added).toEqual([false, false, false, false, true]);
    expect(reasons(out.build())).toEqual([
      'invalid-reference',
      'invalid-reference',
      'invalid-reference',
      'invalid-reference',
    ]);
  });
});

describe('allow-list', () => {
  it('follows the glob grammar, and an empty list allows nothing', () => {
    // Prepare
    const nested = new DeliveryBuilder(
      source('distribution', { repositories: ['plugins/**/auth'] }),
      request(''),
    );
    const empty = new DeliveryBuilder(source('distribution', { repositories: [] }), request(''));

    // Act
    const added = [
      nested.add({ repository: 'plugins/auth', tag: '1' }),
      nested.add({ repository: 'plugins/a/b/auth', tag: '1' }),
      nested.add({ repository: 'plugins/other', tag: '1' }),
      empty.add({ repository: 'plugins/auth', tag: '1' }),
    ];

    // Assess
    expect(added).toEqual([true, true, false, false]);
    expect(reasons(nested.build())).toEqual(['not-allowed-repository']);
    expect(reasons(empty.build())).toEqual(['not-allowed-repository']);
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
    // Act
    const same = sameRegistry(a, b);

    // Assess
    expect(same).toBe(expected);
  });

  it('finds the host of URLs and references', () => {
    // Act
    const hosts = [
      hostOf('https://ghcr.io/v2/x/manifests/y'),
      hostOf('localhost/harbor/alpine:1'),
      hostOf('harbor.example.com:8443/p/r@sha256:ab'),
      hostOf('library/alpine'),
    ];

    // Assess
    expect(hosts).toEqual(['ghcr.io', 'localhost', 'harbor.example.com:8443', undefined]);
  });
});
