import { describe, expect, it } from 'vitest';
import { parseWebhook } from '../../shared/core/sources/index.ts';
import { errorCode, fixture, fuzzParser, RECEIVED_AT, reasons, request, source } from './helpers.ts';

const SECRET = 'harbor-auth-header';
const src = source('harbor', { registry: 'harbor.example.com', repositories: ['mesh-plugins/*'] });
const bearer = { Authorization: `Bearer ${SECRET}` };

describe('harbor parser', () => {
  it('turns a default-format PUSH_ARTIFACT into exactly one job', () => {
    // Prepare
    const req = request(fixture('harbor', 'push-default.json'), bearer);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out).toEqual({
      jobs: [
        {
          sourceId: 'harbor-src',
          registry: 'harbor.example.com',
          repository: 'mesh-plugins/basic-auth',
          tag: '1.3.0',
          digest: 'sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('accepts the auth header value verbatim, as Harbor sends it', () => {
    // Prepare
    const req = request(fixture('harbor', 'push-default.json'), { Authorization: SECRET });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toHaveLength(1);
  });

  it('turns a digest pushed without a tag into a digest-only job', () => {
    // Prepare
    const digestInTag = request(fixture('harbor', 'push-digest-only.json'), bearer);
    const noTag = JSON.parse(new TextDecoder().decode(fixture('harbor', 'push-digest-only.json')));
    delete noTag.event_data.resources[0].tag;

    // Act
    const out = parseWebhook(src, SECRET, digestInTag);
    const again = parseWebhook(src, SECRET, request(noTag, bearer));

    // Assess
    expect(out.jobs).toEqual([
      expect.objectContaining({
        repository: 'mesh-plugins/rate-limit',
        digest: 'sha256:13b9b2ff5e7c0f5b5d9a9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f',
      }),
    ]);
    expect(out.jobs[0]?.tag).toBeUndefined();
    expect(again.jobs).toEqual(out.jobs);
  });

  it('handles the CloudEvents payload format with its event id', () => {
    // Prepare
    const req = request(fixture('harbor', 'push-cloudevents.json'), {
      ...bearer,
      'content-type': 'application/json',
    });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.deliveryId).toBe('4b2d6b4e-1f43-4bb2-9b7a-0f2f1a0f4a11');
    expect(out.jobs).toEqual([
      expect.objectContaining({
        repository: 'mesh-plugins/basic-auth',
        tag: '1.3.0',
        deliveryId: out.deliveryId,
      }),
    ]);
  });

  it('acknowledges pulls', () => {
    // Prepare
    const req = request(fixture('harbor', 'pull-default.json'), bearer);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['pull']);
  });

  it('ignores other registries, repositories outside the allow-list and bad references', () => {
    // Prepare
    const other = source('harbor', { registry: 'harbor.internal:8443', repositories: ['mesh-plugins/*'] });
    const narrow = source('harbor', { registry: 'harbor.example.com', repositories: ['library/*'] });
    const bad = new TextDecoder()
      .decode(fixture('harbor', 'push-default.json'))
      .replaceAll('"tag": "1.3.0"', '"tag": "1.3.0:evil"');

    // Act
    const otherOut = parseWebhook(other, SECRET, request(fixture('harbor', 'push-default.json'), bearer));
    const narrowOut = parseWebhook(narrow, SECRET, request(fixture('harbor', 'push-default.json'), bearer));
    const badOut = parseWebhook(src, SECRET, request(bad, bearer));

    // Assess
    expect(reasons(otherOut)).toEqual(['other-registry']);
    expect(reasons(narrowOut)).toEqual(['not-allowed-repository']);
    expect(reasons(badOut)).toEqual(['invalid-reference']);
  });

  it('reads the host of resource_url even when it has no dot', () => {
    // Prepare
    const body = (host: string) =>
      new TextDecoder()
        .decode(fixture('harbor', 'push-default.json'))
        .replaceAll('harbor.example.com/', `${host}/`);
    const dotless = source('harbor', { registry: 'harbor', repositories: ['mesh-plugins/*'] });

    // Act
    const dotlessOut = parseWebhook(dotless, SECRET, request(body('harbor'), bearer));
    const evilOut = parseWebhook(src, SECRET, request(body('evil'), bearer));

    // Assess
    expect(dotlessOut.jobs).toHaveLength(1);
    expect(reasons(evilOut)).toEqual(['other-registry']);
  });

  it.each([
    ['no header', {}],
    ['a wrong secret', { Authorization: 'Bearer wrong' }],
    ['a wrong bare secret', { Authorization: 'wrong' }],
    ['the secret in another header', { 'X-Auth': SECRET }],
  ])('refuses %s', (_n, headers) => {
    // Prepare
    const req = request(fixture('harbor', 'push-default.json'), headers);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('refuses a body with no type', () => {
    // Prepare
    const req = request('{"event_data":{}}', bearer);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = [
      'push-default.json',
      'push-digest-only.json',
      'pull-default.json',
      'push-cloudevents.json',
    ].map((n) => ({
      body: new TextDecoder().decode(fixture('harbor', n)),
      headers: { authorization: SECRET },
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, { iterations: 3000, seed: 3 });

    // Assess
    expect(stats.jobs).toBeGreaterThan(0);
    expect(stats.rejected).toBeGreaterThan(0);
  });
});
