/** Which request targets the registry API takes, read as sent: nothing normalized, nothing decoded. */
import { describe, expect, it } from 'vitest';
import { isOciTarget, rawPathOf } from '../../shared/embedded/oci-endpoint.ts';

describe('registry API targets', () => {
  it('takes /v2 and everything under it, origin-form or absolute-form', () => {
    // Act / Assess
    for (const target of [
      '/v2',
      '/v2/',
      '/v2/?x=1',
      '/v2/local/a/manifests/1.0',
      '/v2/../keys.json',
      '/v2/%2e%2e/keys.json',
      'http://mirror.example/v2/local/a/tags/list?n=1',
      'HTTPS://mirror.example/v2/',
    ]) {
      expect(isOciTarget(target), target).toBe(true);
    }
  });

  it('leaves the rest to the server, including what only resolves into /v2', () => {
    // Act / Assess
    for (const target of [
      undefined,
      '',
      '/v2x',
      '/v22/',
      '/V2/',
      '//v2/',
      '/modules/../v2/',
      '/%762/',
      'v2/',
      'http://mirror.example/keys.json',
    ]) {
      expect(isOciTarget(target), String(target)).toBe(false);
    }
  });

  it('keeps dot segments and percent-encoding as they arrived', () => {
    // Act / Assess
    expect(rawPathOf('/v2/a/../b%2Fc/manifests/1?x#y')).toBe('/v2/a/../b%2Fc/manifests/1');
    expect(rawPathOf('http://h:1/v2/a/./b')).toBe('/v2/a/./b');
    expect(rawPathOf('http://h:1')).toBe('/');
  });
});
