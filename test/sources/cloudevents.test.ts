import { describe, expect, it } from 'vitest';
import { parseWebhook } from '../../shared/core/sources/index.ts';
import {
  errorCode,
  fixture,
  fixtureJson,
  fuzzParser,
  RECEIVED_AT,
  reasons,
  request,
  source,
} from './helpers.ts';

const SECRET = 'ce-secret';
const src = source('cloudevents', { registry: '127.0.0.1:5000', repositories: ['plugins/**'] });
const bearer = { Authorization: `Bearer ${SECRET}` };
const structured = { ...bearer, 'Content-Type': 'application/cloudevents+json' };
const binaryHeaders = fixtureJson<Record<string, string>>('cloudevents', 'zot-binary-headers.json');

describe('cloudevents parser', () => {
  it('turns a zot binary-mode image.updated into exactly one job', () => {
    // Prepare
    const req = request(fixture('cloudevents', 'zot-binary-data.json'), { ...binaryHeaders, ...bearer });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out).toEqual({
      deliveryId: 'zotregistry.dev f1b9d5f2-6a3c-4b8e-9d21-5c7a0e3b2a10',
      jobs: [
        {
          sourceId: 'cloudevents-src',
          registry: '127.0.0.1:5000',
          repository: 'plugins/basic-auth',
          tag: '1.4.0',
          digest: 'sha256:6e7f3c1a2b5d4e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f',
          deliveryId: 'zotregistry.dev f1b9d5f2-6a3c-4b8e-9d21-5c7a0e3b2a10',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('reads a binary-mode event that carries no data', () => {
    // Prepare
    const req = request('', { ...binaryHeaders, ...bearer });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['invalid-reference']);
  });

  it('reads a structured zot event', () => {
    // Prepare
    const req = request(fixture('cloudevents', 'zot-structured.json'), structured);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([
      expect.objectContaining({
        repository: 'plugins/jwt-filter',
        tag: '2.0.0',
        digest: 'sha256:7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b',
      }),
    ]);
  });

  it('ignores a manifest put by digest (an index platform manifest or referrer), acknowledged', () => {
    // Prepare
    const req = request(fixture('cloudevents', 'zot-structured-untagged.json'), structured);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['untagged']);
  });

  it('reads Harbor harbor.artifact.pushed events', () => {
    // Prepare
    const harborSrc = source('cloudevents', {
      registry: 'harbor.example.com',
      repositories: ['mesh-plugins/**'],
    });
    const req = request(fixture('cloudevents', 'harbor-structured.json'), structured);

    // Act
    const out = parseWebhook(harborSrc, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([
      expect.objectContaining({
        registry: 'harbor.example.com',
        repository: 'mesh-plugins/basic-auth',
        tag: '1.3.0',
      }),
    ]);
  });

  it('reads batches and acknowledges deletes', () => {
    // Prepare
    const batch = `[${new TextDecoder().decode(fixture('cloudevents', 'zot-structured.json'))},${new TextDecoder().decode(
      fixture('cloudevents', 'zot-deleted-structured.json'),
    )}]`;
    const req = request(batch, {
      ...bearer,
      'content-type': 'application/cloudevents-batch+json; charset=utf-8',
    });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toHaveLength(1);
    expect(reasons(out)).toEqual(['delete']);
    expect(out.deliveryId).toBeUndefined();
  });

  it('accepts Basic auth with the secret as password, and a custom static header', () => {
    // Prepare
    const basic = { Authorization: `Basic ${Buffer.from(`zot:${SECRET}`).toString('base64')}` };
    const body = fixture('cloudevents', 'zot-structured.json');
    const custom = source('cloudevents', { webhookHeader: 'X-Zot-Token' });

    // Act
    const basicOut = parseWebhook(
      src,
      SECRET,
      request(body, { ...basic, 'content-type': 'application/cloudevents+json' }),
    );
    const customOut = parseWebhook(
      custom,
      SECRET,
      request(body, { 'x-zot-token': SECRET, 'content-type': 'application/cloudevents+json' }),
    );
    const authorizationOnly = errorCode(() => parseWebhook(custom, SECRET, request(body, structured)));

    // Assess
    expect(basicOut.jobs).toHaveLength(1);
    expect(customOut.jobs).toHaveLength(1);
    // With a custom header configured, Authorization alone does not authenticate.
    expect(authorizationOnly).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('ignores an other-registry, a non-allowed repository and an invalid reference', () => {
    // Prepare
    const ev = (name: string, reference: string) =>
      JSON.stringify({
        specversion: '1.0',
        id: name + reference,
        source: 'zotregistry.dev',
        type: 'zotregistry.image.updated',
        data: { name, reference },
      });
    const batch = `[${ev('secret/x', '1')},${ev('plugins/x', 'bad:tag')},${ev('Plugins/X', '1')}]`;
    const batchReq = request(batch, { ...bearer, 'content-type': 'application/cloudevents-batch+json' });
    const harborReq = request(fixture('cloudevents', 'harbor-structured.json'), structured);

    // Act
    const out = parseWebhook(src, SECRET, batchReq);
    const harborOther = parseWebhook(src, SECRET, harborReq);

    // Assess
    expect(reasons(out)).toEqual(['not-allowed-repository', 'invalid-reference', 'invalid-reference']);
    expect(reasons(harborOther)).toEqual(['other-registry']);
  });

  it.each([
    ['no credentials', {}],
    ['a wrong bearer', { Authorization: 'Bearer nope' }],
    ['a wrong Basic password', { Authorization: `Basic ${Buffer.from('zot:nope').toString('base64')}` }],
    [
      'a Basic header with no password part',
      { Authorization: `Basic ${Buffer.from(SECRET).toString('base64')}` },
    ],
  ])('refuses %s', (_n, headers) => {
    // Prepare
    const req = request(fixture('cloudevents', 'zot-structured.json'), {
      ...headers,
      'content-type': 'application/cloudevents+json',
    });

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it.each([
    [
      'binary mode without ce-id',
      { ...bearer, 'ce-specversion': '1.0', 'ce-source': 's', 'ce-type': 't' },
      '{}',
    ],
    [
      'an unknown specversion',
      { ...bearer, 'ce-specversion': '0.3', 'ce-id': '1', 'ce-source': 's', 'ce-type': 't' },
      '{}',
    ],
    ['neither mode', bearer, '{"name":"x"}'],
    ['a structured event without type', structured, '{"specversion":"1.0","id":"1","source":"s"}'],
    ['an empty structured event', structured, ''],
  ])('refuses %s as malformed', (_n, headers, body) => {
    // Prepare
    const req = request(body, headers);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const text = (n: string) => new TextDecoder().decode(fixture('cloudevents', n));
    const seeds = [
      { body: text('zot-binary-data.json'), headers: { ...binaryHeaders, ...bearer } },
      { body: text('zot-structured.json'), headers: structured },
      { body: text('zot-structured-untagged.json'), headers: structured },
      { body: text('harbor-structured.json'), headers: structured },
      {
        body: `[${text('zot-structured.json')},${text('zot-deleted-structured.json')}]`,
        headers: { ...bearer, 'content-type': 'application/cloudevents-batch+json' },
      },
    ];

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, { iterations: 3000, seed: 4 });

    // Assess
    expect(stats.jobs).toBeGreaterThan(0);
    expect(stats.rejected).toBeGreaterThan(0);
  });
});
