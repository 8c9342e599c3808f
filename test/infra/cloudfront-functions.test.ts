/**
 * The registry API's two CloudFront Functions (infra/cloudfront/), run as CloudFront runs them: in
 * a context of their own (no Node globals, no module system) with the event CloudFront Functions
 * pass. The viewer-request one answers writes, malformed paths and names outside the configured
 * sources itself and maps the rest onto the publisher's `registry/` keys; the viewer-response one
 * turns those objects' metadata into the registry's headers and shows clients none of it. Both
 * must stay ES5.1 (cloudfront-js-1.0) and under CloudFront's size limit.
 */
import { runInNewContext } from 'node:vm';
import { parse } from 'acorn';
import { describe, expect, it } from 'vitest';
import {
  CLOUDFRONT_FUNCTION_MAX_BYTES,
  registryRequestCode,
  registryResponseCode,
  SOURCE_IDS_PLACEHOLDER,
  substituteSourceIds,
} from '../../infra/lib/cloudfront-functions.ts';
import { DeploymentError } from '../../infra/lib/deployment.ts';
import { registryKeys, registryMetadata } from '../../shared/core/storage-keys.ts';

type Handler = (event: unknown) => unknown;
type Fields = Record<string, { value: string; multiValue?: { value: string }[] }>;

interface Generated {
  statusCode: number;
  statusDescription: string;
  headers: Fields;
  body?: { encoding: string; data: string };
}

interface ForwardedRequest {
  method: string;
  uri: string;
  querystring: Fields;
  headers: Fields;
  cookies: Fields;
}

const SOURCES = ['ghcr', 'hub', 'team-b'];
const SHA256 = `sha256:${'0123456789abcdef'.repeat(4)}`;
const SHA512 = `sha512:${'ab'.repeat(64)}`;
const WRITE_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'CONNECT', 'TRACE', 'get', 'head'];

/** The function's code evaluated as CloudFront does: a script whose `handler` it calls. */
function load(code: string): Handler {
  return runInNewContext(`${code}\n;handler`, {}) as Handler;
}

const fields = (values: Record<string, string>): Fields =>
  Object.fromEntries(Object.entries(values).map(([k, value]) => [k, { value }]));

function viewerRequestEvent(uri: string, method = 'GET', query: Record<string, string> = {}) {
  return {
    version: '1.0',
    context: {
      eventType: 'viewer-request',
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'EDFDVBD6EXAMPLE',
      requestId: '4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==',
    },
    viewer: { ip: '198.51.100.11' },
    request: {
      method,
      uri,
      querystring: fields(query),
      headers: fields({
        host: 'd111111abcdef8.cloudfront.net',
        accept: 'application/vnd.oci.image.manifest.v1+json',
      }),
      cookies: {},
    },
  };
}

function viewerResponseEvent(
  uri: string,
  headers: Record<string, string>,
  query: Record<string, string> = {},
  statusCode = 200,
) {
  return {
    version: '1.0',
    context: {
      eventType: 'viewer-response',
      distributionDomainName: 'd111111abcdef8.cloudfront.net',
      distributionId: 'EDFDVBD6EXAMPLE',
      requestId: '4TyzHTaYWb1GX1qTfsHhEqV6HUDd_BzoBZnwfnvQc_1oF26ClkoUSEQ==',
    },
    viewer: { ip: '198.51.100.11' },
    request: {
      method: 'GET',
      uri,
      querystring: fields(query),
      headers: fields({ host: 'd111111abcdef8.cloudfront.net' }),
      cookies: {},
    },
    response: { statusCode, statusDescription: 'OK', headers: fields(headers), cookies: {} },
  };
}

const requestHandler = load(registryRequestCode(SOURCES));
const responseHandler = load(registryResponseCode());

/** Cross-context objects, compared as the JSON CloudFront would read. */
const plain = <T>(value: unknown): T => JSON.parse(JSON.stringify(value)) as T;

function request(uri: string, method = 'GET', query: Record<string, string> = {}) {
  return plain<Generated & ForwardedRequest>(requestHandler(viewerRequestEvent(uri, method, query)));
}

/** The request CloudFront forwards to the bucket: the viewer's, with only its uri changed. */
function forwarded(uri: string, method = 'GET', query: Record<string, string> = {}): string {
  const out = request(uri, method, query);
  expect(out.statusCode, `${method} ${uri} was answered, not forwarded`).toBeUndefined();
  expect(out).toEqual({ ...viewerRequestEvent(uri, method, query).request, uri: out.uri });
  return out.uri;
}

/** An answer of the function's own, with the headers every one of them carries. */
function answered(uri: string, method = 'GET', query: Record<string, string> = {}): Generated {
  const out = request(uri, method, query);
  expect(out.uri, `${method} ${uri} was forwarded to ${out.uri}`).toBeUndefined();
  expect(out.headers).toMatchObject(
    fields({
      'content-type': 'application/json; charset=utf-8',
      'docker-distribution-api-version': 'registry/2.0',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    }),
  );
  return out;
}

function registryError(uri: string, method = 'GET', query: Record<string, string> = {}) {
  const out = answered(uri, method, query);
  expect(out.body?.encoding).toBe('text');
  const body = JSON.parse(out.body!.data) as {
    errors: { code: string; message: string; detail?: unknown }[];
  };
  expect(body.errors).toHaveLength(1);
  return { status: out.statusCode, description: out.statusDescription, ...body.errors[0]! };
}

function response(event: ReturnType<typeof viewerResponseEvent>) {
  return plain<{ statusCode: number; headers: Fields }>(responseHandler(event));
}

describe('the registry viewer-request function: what it refuses', () => {
  it('answers every method but GET and HEAD with 405, never with a request', () => {
    for (const method of WRITE_METHODS) {
      for (const uri of [
        `/v2/ghcr/org/plugin/manifests/v1`,
        `/v2/ghcr/org/plugin/blobs/uploads/`,
        `/v2/ghcr/org/plugin/blobs/${SHA256}`,
        '/v2/',
        '/v2/../registry/x',
      ]) {
        // Prepare
        const event = viewerRequestEvent(uri, method);

        // Act
        const out = plain<Generated & Partial<ForwardedRequest>>(requestHandler(event));

        // Assess
        expect(out.statusCode, `${method} ${uri}`).toBe(405);
        expect(out.statusDescription).toBe('Method Not Allowed');
        expect(out).not.toHaveProperty('uri');
        expect(out).not.toHaveProperty('method');
        expect(out.headers.allow).toEqual({ value: 'GET, HEAD' });
        expect(JSON.parse(out.body!.data)).toEqual({
          errors: [{ code: 'UNSUPPORTED', message: 'this registry is read-only' }],
        });
        expect(event.request.uri).toBe(uri);
      }
    }
  });

  it('answers /v2 and /v2/ with {} and no body for HEAD', () => {
    for (const uri of ['/v2', '/v2/']) {
      const get = answered(uri);
      expect(get.statusCode).toBe(200);
      expect(get.statusDescription).toBe('OK');
      expect(get.body).toEqual({ encoding: 'text', data: '{}' });
      const head = answered(uri, 'HEAD');
      expect(head.statusCode).toBe(200);
      expect(head).not.toHaveProperty('body');
    }
  });

  it('refuses dot segments, empty segments, percent-encoding and backslashes before routing', () => {
    for (const uri of [
      '/v2/ghcr/../hub/plugin/manifests/v1',
      '/v2/ghcr/org/plugin/manifests/..',
      '/v2/ghcr/./plugin/manifests/v1',
      '/v2/ghcr//plugin/manifests/v1',
      '/v2//ghcr/plugin/tags/list',
      '/v2/ghcr/plugin/tags/list/',
      '/v2/ghcr%2Fplugin/manifests/v1',
      '/v2/ghcr/%2e%2e/registry/manifests/v1',
      '/v2/ghcr/plugin/manifests/v1%00',
      '/v2/ghcr\\plugin/manifests/v1',
      '/v2/ghcr/plugin/blobs/..\\x',
    ]) {
      expect(registryError(uri), uri).toEqual({
        status: 400,
        description: 'Bad Request',
        code: 'NAME_INVALID',
        message: 'a path must not hold percent-encoded characters, empty segments, or . or .. segments',
      });
    }
  });

  it('answers paths outside /v2/ and endpoints it does not serve with 404 UNSUPPORTED', () => {
    for (const uri of [
      '/v2x',
      '/v2.json',
      '/v20/ghcr/plugin/tags/list',
      '/v2/_catalog',
      '/v2/ghcr/plugin',
      '/v2/ghcr/plugin/tags',
      '/v2/ghcr/plugin/tags/list/extra',
      '/v2/ghcr/plugin/manifests',
      '/v2/ghcr/plugin/blobs/uploads/1234',
      `/v2/ghcr/plugin/referrers/${SHA256}`,
    ]) {
      expect(registryError(uri), uri).toMatchObject({
        status: 404,
        code: 'UNSUPPORTED',
        message: 'no such endpoint: this registry serves manifests, blobs and tags',
      });
    }
  });

  it('refuses names outside the repository grammar, without a slash or over 255 characters', () => {
    const longest = `ghcr/${'a'.repeat(250)}`;
    expect(longest).toHaveLength(255);
    for (const name of [
      'ghcr/Org/plugin',
      'GHCR/plugin',
      'ghcr/plugin-',
      'ghcr/-plugin',
      'ghcr/_plugin',
      'ghcr/plu..gin',
      'ghcr/plu___gin',
      'ghcr/plu:gin',
      'ghcr/plu gin',
      'ghcr',
      `${longest}a`,
    ]) {
      for (const path of ['tags/list', 'manifests/v1', `blobs/${SHA256}`]) {
        expect(registryError(`/v2/${name}/${path}`), name).toEqual({
          status: 400,
          description: 'Bad Request',
          code: 'NAME_INVALID',
          message: `invalid repository name ${JSON.stringify(name)}`,
        });
      }
    }
    // The grammar's separators, and the longest name there is, are served.
    for (const name of ['ghcr/a.b/c_d/e__f/g--h-i', longest]) {
      expect(forwarded(`/v2/${name}/manifests/v1`)).toBe(`/registry/${name}/manifests/v1`);
    }
  });

  it('answers a name outside the configured sources with 404 NAME_UNKNOWN', () => {
    for (const name of [
      'quay/plugin',
      'gh/plugin',
      'ghcr-x/plugin',
      'hubb/org/plugin',
      'constructor/plugin',
    ]) {
      for (const [path, query] of [
        ['manifests/v1', {}],
        [`manifests/${SHA256}`, {}],
        [`blobs/${SHA256}`, {}],
        ['tags/list', {}],
        ['tags/list', { n: '0' }],
      ] as const) {
        expect(registryError(`/v2/${name}/${path}`, 'GET', query), `${name}/${path}`).toEqual({
          status: 404,
          description: 'Not Found',
          code: 'NAME_UNKNOWN',
          message: `repository ${name} is not served by this mirror`,
          detail: { name },
        });
      }
    }
  });

  it('serves no name by the properties every object has', () => {
    // Prepare: only `constructor` is a valid name component; the others are refused as names first.
    const withPrototypeIds = load(registryRequestCode(['ghcr', '__proto__', 'toString']));
    const codeFor = (handler: Handler, name: string) => {
      const out = plain<Generated>(handler(viewerRequestEvent(`/v2/${name}/manifests/v1`)));
      return out.body === undefined
        ? `forwarded ${JSON.stringify(out)}`
        : JSON.parse(out.body.data).errors[0].code;
    };

    // Act
    const codes = ['constructor', 'hasownproperty', 'tostring', 'valueof', '__proto__', 'hasOwnProperty'].map(
      (source) => [
        codeFor(requestHandler, `${source}/plugin`),
        codeFor(withPrototypeIds, `${source}/plugin`),
      ],
    );

    // Assess
    expect(codes).toEqual([
      ['NAME_UNKNOWN', 'NAME_UNKNOWN'],
      ['NAME_UNKNOWN', 'NAME_UNKNOWN'],
      ['NAME_UNKNOWN', 'NAME_UNKNOWN'],
      ['NAME_UNKNOWN', 'NAME_UNKNOWN'],
      ['NAME_INVALID', 'NAME_INVALID'],
      ['NAME_INVALID', 'NAME_INVALID'],
    ]);
    expect(codeFor(withPrototypeIds, 'ghcr/plugin')).toMatch(/^forwarded /);
  });

  it('checks the reference before whether the name is served, as the embedded endpoint does', () => {
    expect(registryError('/v2/quay/plugin/manifests/sha256:abc').code).toBe('DIGEST_INVALID');
    expect(registryError(`/v2/quay/plugin/manifests/${SHA512}`).code).toBe('MANIFEST_UNKNOWN');
    expect(registryError('/v2/quay/plugin/blobs/v1').code).toBe('DIGEST_INVALID');
    expect(registryError('/v2/quay/plugin/tags/list', 'GET', { n: 'x' }).code).toBe('UNSUPPORTED');
    // And the name's grammar before either.
    expect(registryError('/v2/Quay/plugin/manifests/sha256:abc').code).toBe('NAME_INVALID');
  });
});

describe('the registry viewer-request function: manifests and blobs', () => {
  it('maps a tag and a sha256 digest onto the manifest keys, for GET and HEAD', () => {
    for (const method of ['GET', 'HEAD']) {
      expect(forwarded('/v2/ghcr/org/plugin/manifests/v1.2.3', method)).toBe(
        '/registry/ghcr/org/plugin/manifests/v1.2.3',
      );
      expect(forwarded(`/v2/hub/plugin/manifests/${SHA256}`, method)).toBe(
        `/registry/hub/plugin/manifests/${SHA256}`,
      );
      expect(forwarded('/v2/team-b/a/b/c/manifests/_Latest-1.x', method)).toBe(
        `/${registryKeys.manifest('team-b/a/b/c', '_Latest-1.x')}`,
      );
    }
    const longestTag = `v${'1'.repeat(127)}`;
    expect(forwarded(`/v2/ghcr/plugin/manifests/${longestTag}`)).toBe(
      `/registry/ghcr/plugin/manifests/${longestTag}`,
    );
  });

  it('maps a sha256 digest onto the blob key, for GET and HEAD', () => {
    for (const method of ['GET', 'HEAD']) {
      expect(forwarded(`/v2/ghcr/org/plugin/blobs/${SHA256}`, method)).toBe(
        `/registry/ghcr/org/plugin/blobs/${SHA256}`,
      );
    }
    expect(forwarded(`/v2/hub/plugin/blobs/${SHA256}`)).toBe(`/${registryKeys.blob('hub/plugin', SHA256)}`);
  });

  it('answers a digest of another algorithm as unknown, with the name as detail', () => {
    for (const digest of [SHA512, 'blake3:abc', 'sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564']) {
      expect(registryError(`/v2/ghcr/plugin/manifests/${digest}`), digest).toEqual({
        status: 404,
        description: 'Not Found',
        code: 'MANIFEST_UNKNOWN',
        message: 'manifest unknown to ghcr/plugin: only what the signed manifest lists is served',
        detail: { name: 'ghcr/plugin' },
      });
      expect(registryError(`/v2/ghcr/plugin/blobs/${digest}`), digest).toEqual({
        status: 404,
        description: 'Not Found',
        code: 'BLOB_UNKNOWN',
        message: 'blob unknown to ghcr/plugin: only what a listed manifest reaches is served',
        detail: { name: 'ghcr/plugin' },
      });
    }
  });

  it('answers a malformed digest with 400 DIGEST_INVALID', () => {
    for (const digest of [
      'sha256:abc',
      `sha256:${'A'.repeat(64)}`,
      `${SHA256}0`,
      'sha256:',
      `SHA256:${'a'.repeat(64)}`,
      ':abc',
      'sha512:',
      'sha512:a+b',
      '-sha:abc',
    ]) {
      for (const kind of ['manifests', 'blobs']) {
        expect(registryError(`/v2/ghcr/plugin/${kind}/${digest}`), `${kind} ${digest}`).toEqual({
          status: 400,
          description: 'Bad Request',
          code: 'DIGEST_INVALID',
          message: `invalid digest ${JSON.stringify(digest)}`,
        });
      }
    }
    // A blob is only ever named by digest.
    expect(registryError('/v2/ghcr/plugin/blobs/latest').code).toBe('DIGEST_INVALID');
  });

  it('answers a reference that is no tag as an unknown manifest', () => {
    for (const reference of ['.hidden', '-v1', `v${'1'.repeat(128)}`, 'v1+build', 'v1~1']) {
      expect(registryError(`/v2/ghcr/plugin/manifests/${reference}`), reference).toMatchObject({
        status: 404,
        code: 'MANIFEST_UNKNOWN',
        detail: { name: 'ghcr/plugin' },
      });
    }
  });

  it('leaves no body on a HEAD it answers itself', () => {
    for (const uri of [
      `/v2/ghcr/plugin/manifests/${SHA512}`,
      '/v2/ghcr/plugin/blobs/sha256:abc',
      '/v2/quay/plugin/manifests/v1',
      '/v2/ghcr/../x/manifests/v1',
      '/v2/_catalog',
    ]) {
      const out = answered(uri, 'HEAD');
      expect(out.statusCode, uri).toBeGreaterThanOrEqual(400);
      expect(out, uri).not.toHaveProperty('body');
    }
  });
});

describe('the registry viewer-request function: tags/list', () => {
  const name = 'ghcr/org/plugin';
  const uri = `/v2/${name}/tags/list`;

  it('maps the whole list and one-tag pages onto their keys', () => {
    const cases: [Record<string, string>, string][] = [
      [{}, registryKeys.tagList(name)],
      [{ n: '5' }, registryKeys.firstTagPage(name)],
      [{ n: '000000001' }, registryKeys.firstTagPage(name)],
      [{ last: 'v1' }, registryKeys.tagPageAfter(name, 'v1')],
      [{ n: '5', last: 'v1' }, registryKeys.tagPageAfter(name, 'v1')],
      [{ n: '999999999', last: 'v1.0.0-rc_1' }, registryKeys.tagPageAfter(name, 'v1.0.0-rc_1')],
      // Parameters the registry API does not have are left for the bucket to ignore.
      [{ utm: 'x' }, registryKeys.tagList(name)],
    ];
    for (const [query, key] of cases) {
      expect(forwarded(uri, 'GET', query), JSON.stringify(query)).toBe(`/${key}`);
      expect(forwarded(uri, 'HEAD', query), JSON.stringify(query)).toBe(`/${key}`);
    }
    expect(forwarded(uri)).toBe('/registry/ghcr/org/plugin/tags/list');
    expect(forwarded(uri, 'GET', { n: '5' })).toBe('/registry/ghcr/org/plugin/tags/page/first');
    expect(forwarded(uri, 'GET', { last: 'v1' })).toBe('/registry/ghcr/org/plugin/tags/page/after/v1');
    expect(forwarded(uri, 'GET', { n: '5', last: 'v1' })).toBe(
      '/registry/ghcr/org/plugin/tags/page/after/v1',
    );
  });

  it('answers n=0 itself with an empty list and no Link', () => {
    const queries: Record<string, string>[] = [{ n: '0' }, { n: '000' }, { n: '0', last: 'v1' }];
    for (const query of queries) {
      const out = answered(uri, 'GET', query);
      expect(out.statusCode).toBe(200);
      expect(JSON.parse(out.body!.data)).toEqual({ name, tags: [] });
      expect(out.headers).not.toHaveProperty('link');
      expect(answered(uri, 'HEAD', query)).not.toHaveProperty('body');
    }
  });

  it('refuses an n that is no whole number and a last that is no tag', () => {
    for (const n of ['abc', '', '-1', '1.5', '1e3', '1234567890', ' 5']) {
      expect(registryError(uri, 'GET', { n }), `n=${n}`).toEqual({
        status: 400,
        description: 'Bad Request',
        code: 'UNSUPPORTED',
        message: 'n must be a whole number',
      });
    }
    for (const last of ['../x', '', '.v1', 'v1/x', 'a%2Fb', `v${'1'.repeat(128)}`]) {
      expect(registryError(uri, 'GET', { n: '5', last }), `last=${last}`).toEqual({
        status: 400,
        description: 'Bad Request',
        code: 'UNSUPPORTED',
        message: 'last must be a tag',
      });
    }
  });

  it('reads the first of a repeated parameter', () => {
    // Prepare
    const event = viewerRequestEvent(uri, 'GET', { n: 'x', last: 'v1' });
    event.request.querystring.n = { value: '5', multiValue: [{ value: '5' }, { value: 'x' }] };

    // Act
    const out = plain<ForwardedRequest>(requestHandler(event));

    // Assess
    expect(out.uri).toBe('/registry/ghcr/org/plugin/tags/page/after/v1');
    expect(out.querystring.n).toEqual({ value: '5', multiValue: [{ value: '5' }, { value: 'x' }] });
  });
});

describe('the registry viewer-request function: any request', () => {
  it('forwards only GET and HEAD, and only to a served name under registry/', () => {
    // Prepare: paths put together from the pieces the checks are about, the same ones every run.
    const pieces = [
      'ghcr',
      'quay',
      'a',
      'B',
      '..',
      '.',
      '',
      '%2e',
      '\\',
      'manifests',
      'blobs',
      'tags',
      'list',
    ];
    const references = ['v1', SHA256, SHA512, 'sha256:x', '..', 'page', 'first'];
    let seed = 42;
    const next = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const served = new RegExp(`^/registry/(?:${SOURCES.join('|')})/[a-z0-9._/:-]+$`);
    let forwardedCount = 0;

    for (let i = 0; i < 5000; i++) {
      const segments = Array.from({ length: 1 + next(5) }, () => pieces[next(pieces.length)]);
      const uri = `/v2/${segments.join('/')}/${references[next(references.length)]}`;
      const method = ['GET', 'HEAD', 'PUT', 'DELETE'][next(4)]!;

      // Act
      const out = plain<Generated & ForwardedRequest>(requestHandler(viewerRequestEvent(uri, method)));

      // Assess
      if (out.statusCode !== undefined) {
        expect([200, 400, 404, 405], uri).toContain(out.statusCode);
        continue;
      }
      forwardedCount++;
      expect(['GET', 'HEAD'], uri).toContain(out.method);
      expect(out.uri, uri).toMatch(served);
      expect(
        out.uri.split('/').filter((s) => s === '' || s === '.' || s === '..'),
        uri,
      ).toEqual(['']);
    }
    expect(forwardedCount).toBeGreaterThan(0);
  });
});

describe('the registry viewer-response function', () => {
  const digestHeader = `x-amz-meta-${registryMetadata.digest}`;
  const nextLastHeader = `x-amz-meta-${registryMetadata.nextLast}`;
  const s3Headers = {
    'content-type': 'application/vnd.oci.image.manifest.v1+json',
    'content-length': '512',
    etag: '"5d41402abc4b2a76b9719d911017c592"',
    'x-amz-version-id': '3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY',
    'x-amz-server-side-encryption': 'aws:kms',
    'x-amz-meta-publisher': 'wasm-mirror',
  };

  it('sends the stored digest as Docker-Content-Digest and none of the metadata', () => {
    // Prepare
    const event = viewerResponseEvent('/registry/ghcr/plugin/manifests/v1', {
      ...s3Headers,
      [digestHeader]: SHA256,
    });

    // Act
    const out = response(event);

    // Assess
    expect(out.statusCode).toBe(200);
    expect(out.headers).toEqual(
      fields({
        'content-type': 'application/vnd.oci.image.manifest.v1+json',
        'content-length': '512',
        etag: '"5d41402abc4b2a76b9719d911017c592"',
        'docker-distribution-api-version': 'registry/2.0',
        'docker-content-digest': SHA256,
      }),
    );
  });

  it('adds the API version but no digest or Link to an object without metadata', () => {
    for (const uri of [
      '/registry/ghcr/plugin/tags/list',
      '/v2/ghcr/plugin/tags/list',
      '/registry/ghcr/x/blobs/y',
    ]) {
      const out = response(viewerResponseEvent(uri, s3Headers, { n: '5' }, 304));
      expect(out.statusCode).toBe(304);
      expect(out.headers).toEqual(
        fields({
          'content-type': 'application/vnd.oci.image.manifest.v1+json',
          'content-length': '512',
          etag: '"5d41402abc4b2a76b9719d911017c592"',
          'docker-distribution-api-version': 'registry/2.0',
        }),
      );
    }
  });

  it('links the next page of tags, with the n the client asked for', () => {
    for (const uri of [
      '/v2/ghcr/org/plugin/tags/list',
      '/registry/ghcr/org/plugin/tags/page/first',
      '/registry/ghcr/org/plugin/tags/page/after/v1',
    ]) {
      // Prepare
      const headers = { 'content-type': 'application/json', [nextLastHeader]: 'v2.0.0' };

      // Act
      const withN = response(viewerResponseEvent(uri, headers, { n: '5', last: 'v1' }));
      const withoutN = response(viewerResponseEvent(uri, headers, { last: 'v1' }));

      // Assess
      expect(withN.headers.link, uri).toEqual({
        value: '</v2/ghcr/org/plugin/tags/list?n=5&last=v2.0.0>; rel="next"',
      });
      expect(withoutN.headers.link, uri).toEqual({
        value: '</v2/ghcr/org/plugin/tags/list?last=v2.0.0>; rel="next"',
      });
      for (const out of [withN, withoutN]) {
        expect(out.headers).not.toHaveProperty(nextLastHeader);
        expect(out.headers['docker-distribution-api-version']).toEqual({ value: 'registry/2.0' });
        expect(out.headers).not.toHaveProperty('docker-content-digest');
      }
    }
  });

  it('adds no Link when the path names no tags list or the next tag is no tag', () => {
    for (const [uri, nextLast] of [
      ['/registry/ghcr/org/plugin/manifests/v1', 'v2'],
      ['/v2/ghcr/org/plugin/manifests/v1', 'v2'],
      ['/registry/Ghcr/plugin/tags/page/first', 'v2'],
      ['/other/ghcr/plugin/tags/list', 'v2'],
      ['/v2/ghcr/plugin/tags/list', 'v2>; rel="prev", <https://elsewhere.example/'],
      ['/v2/ghcr/plugin/tags/list', ''],
    ]) {
      const out = response(viewerResponseEvent(uri!, { [nextLastHeader]: nextLast! }, { n: '5' }));
      expect(out.headers, `${uri} ${nextLast}`).toEqual(
        fields({ 'docker-distribution-api-version': 'registry/2.0' }),
      );
    }
  });

  it('leaves out an n that is no whole number', () => {
    const out = response(
      viewerResponseEvent('/v2/ghcr/plugin/tags/list', { [nextLastHeader]: 'v2' }, { n: '5>; rel="x"' }),
    );
    expect(out.headers.link).toEqual({ value: '</v2/ghcr/plugin/tags/list?last=v2>; rel="next"' });
  });
});

describe('the functions as CloudFront takes them', () => {
  const fiftyIds = Array.from({ length: 50 }, (_, i) => `${String(i).padStart(2, '0')}-${'s'.repeat(60)}`);

  it('are ES5.1, as cloudfront-js-1.0 runs', () => {
    for (const code of [
      registryRequestCode(SOURCES),
      registryRequestCode(fiftyIds),
      registryResponseCode(),
    ]) {
      expect(() => parse(code, { ecmaVersion: 5, sourceType: 'script' })).not.toThrow();
    }
    // What the formatter or a habit would slip in is refused at that level.
    for (const later of ['let a = 1;', 'f(a, b,);', 'var f = () => 1;', 'var s = `x`;', 'a?.b;']) {
      expect(() => parse(later, { ecmaVersion: 5 }), later).toThrow();
    }
  });

  it('stay under the size limit with 50 of the longest source ids', () => {
    const request = Buffer.byteLength(registryRequestCode(fiftyIds));
    const response = Buffer.byteLength(registryResponseCode());
    expect(fiftyIds[0]).toHaveLength(63);
    expect(request).toBeLessThan(CLOUDFRONT_FUNCTION_MAX_BYTES);
    expect(response).toBeLessThan(CLOUDFRONT_FUNCTION_MAX_BYTES);
    expect(CLOUDFRONT_FUNCTION_MAX_BYTES).toBe(10 * 1024);
  });

  it('refuses at synth a source list that would make the function larger than CloudFront takes', () => {
    // Prepare: 100 ids of the longest length the config allows.
    const many = Array.from({ length: 100 }, (_, i) => `${'s'.repeat(60)}${String(i).padStart(3, '0')}`);
    // Act / Assess: a DeploymentError, which `cdk synth` prints as one line.
    expect(() => registryRequestCode(many)).toThrow(DeploymentError);
    expect(() => registryRequestCode(many)).toThrow(
      /100 source ids make the \/v2\/ CloudFront Function \d+ bytes/,
    );
  });

  it('puts the source ids into the request function as a JSON array', () => {
    // Prepare
    const ids = [
      'ghcr',
      'a"]; SOURCE_IDS = ["quay',
      'back\\slash',
      'line\u2028end\u2029',
      '$&$`',
      '</script>',
    ];

    // Act
    const code = registryRequestCode(ids);
    const seen = runInNewContext(`${code}\n;SOURCE_IDS`, {}) as string[];

    // Assess
    expect(plain(seen)).toEqual(ids);
    expect(code).not.toContain(SOURCE_IDS_PLACEHOLDER);
    expect(() => parse(code, { ecmaVersion: 5 })).not.toThrow();
    expect(plain(load(code)(viewerRequestEvent('/v2/quay/plugin/manifests/v1')))).toMatchObject({
      statusCode: 404,
    });
  });

  it('refuses code without the placeholder, or with it twice', () => {
    expect(() => substituteSourceIds('var SOURCE_IDS = [];', ['ghcr'])).toThrow(SOURCE_IDS_PLACEHOLDER);
    expect(() =>
      substituteSourceIds(`var A = ${SOURCE_IDS_PLACEHOLDER}; var B = ${SOURCE_IDS_PLACEHOLDER};`, ['ghcr']),
    ).toThrow(SOURCE_IDS_PLACEHOLDER);
    expect(substituteSourceIds(`var SOURCE_IDS = ${SOURCE_IDS_PLACEHOLDER};`, ['ghcr', 'hub'])).toBe(
      'var SOURCE_IDS = ["ghcr","hub"];',
    );
  });

  it('leave the explanations in the files, not in what CloudFront runs', () => {
    const code = registryRequestCode(SOURCES);
    expect(code).toMatch(/^var SOURCE_IDS = \["ghcr","hub","team-b"\];$/m);
    expect(code.split('\n').filter((line) => /^\s*(\/\/.*)?$/.test(line))).toEqual(['']);
    expect(registryResponseCode()).toMatch(/^function handler\(event\) \{$/m);
  });
});
