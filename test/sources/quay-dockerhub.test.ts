import { describe, expect, it } from 'vitest';
import { parseWebhook } from '../../shared/core/sources/index.ts';
import { errorCode, fixture, fuzzParser, RECEIVED_AT, reasons, request, source } from './helpers.ts';

const TOKEN = 'url-path-token-5f2c';

describe('quay parser', () => {
  const src = source('quay', { registry: 'quay.io', repositories: ['mesh/*'] });
  const push = () => request(fixture('quay', 'push.json'), {}, { pathToken: TOKEN });

  it('turns a push into one tag-only job per updated tag', () => {
    // Prepare
    const base = {
      sourceId: 'quay-src',
      registry: 'quay.io',
      repository: 'mesh/basic-auth',
      receivedAt: RECEIVED_AT.toISOString(),
    };

    // Act
    const out = parseWebhook(src, TOKEN, push());

    // Assess
    expect(out).toEqual({
      jobs: [
        { ...base, tag: '1.5.0' },
        { ...base, tag: 'latest' },
      ],
      ignored: [],
    });
  });

  it('acknowledges build notifications', () => {
    // Prepare
    const req = request(fixture('quay', 'build-complete.json'), {}, { pathToken: TOKEN });

    // Act
    const out = parseWebhook(src, TOKEN, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['unsupported-event']);
  });

  it('ignores another Quay host and repositories outside the allow-list', () => {
    // Prepare
    const selfHosted = source('quay', { registry: 'quay.example.com', repositories: ['mesh/*'] });
    const narrow = source('quay', { registry: 'quay.io', repositories: ['other/*'] });
    const bad = { repository: 'mesh/x', docker_url: 'quay.io/mesh/x', updated_tags: ['ok', '.bad', 7] };

    // Act
    const selfHostedOut = parseWebhook(selfHosted, TOKEN, push());
    const narrowOut = parseWebhook(narrow, TOKEN, push());
    const badOut = parseWebhook(src, TOKEN, request(bad, {}, { pathToken: TOKEN }));

    // Assess
    expect(reasons(selfHostedOut)).toEqual(['other-registry', 'other-registry']);
    expect(reasons(narrowOut)).toEqual(['not-allowed-repository', 'not-allowed-repository']);
    expect(badOut.jobs.map((j) => j.tag)).toEqual(['ok']);
    expect(reasons(badOut)).toEqual(['invalid-reference', 'invalid-reference']);
  });

  it.each([
    ['no token', undefined],
    ['a wrong token', 'nope'],
    ['a token prefix', TOKEN.slice(0, -1)],
  ])('refuses %s', (_n, pathToken) => {
    // Prepare
    const extra = pathToken === undefined ? {} : { pathToken };
    const req = request(fixture('quay', 'push.json'), {}, extra);

    // Act
    const code = errorCode(() => parseWebhook(src, TOKEN, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = ['push.json', 'build-complete.json'].map((n) => ({
      body: new TextDecoder().decode(fixture('quay', n)),
      headers: {},
      pathToken: TOKEN,
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, TOKEN, seeds, { iterations: 3000, seed: 5 });

    // Assess
    expect(stats.jobs).toBeGreaterThan(0);
  });
});

describe('dockerhub parser', () => {
  const src = source('dockerhub', { registry: 'docker.io', repositories: ['meshplugins/*', 'library/*'] });

  it('turns a push into one tag-only job', () => {
    // Prepare
    const req = request(fixture('dockerhub', 'push.json'), {}, { pathToken: TOKEN });

    // Act
    const out = parseWebhook(src, TOKEN, req);

    // Assess
    expect(out).toEqual({
      jobs: [
        {
          sourceId: 'dockerhub-src',
          registry: 'docker.io',
          repository: 'meshplugins/basic-auth',
          tag: '1.6.0',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('names official images under library/', () => {
    // Prepare
    const body = { push_data: { tag: '3.20' }, repository: { repo_name: 'alpine' } };

    // Act
    const out = parseWebhook(src, TOKEN, request(body, {}, { pathToken: TOKEN }));

    // Assess
    expect(out.jobs[0]?.repository).toBe('library/alpine');
  });

  it('ignores repositories outside the allow-list and bad tags', () => {
    // Prepare
    const other = { push_data: { tag: '1' }, repository: { repo_name: 'someone/else' } };
    const bad = { push_data: { tag: 'a b' }, repository: { repo_name: 'meshplugins/x' } };

    // Act
    const otherOut = parseWebhook(src, TOKEN, request(other, {}, { pathToken: TOKEN }));
    const badOut = parseWebhook(src, TOKEN, request(bad, {}, { pathToken: TOKEN }));

    // Assess
    expect(reasons(otherOut)).toEqual(['not-allowed-repository']);
    expect(reasons(badOut)).toEqual(['invalid-reference']);
  });

  it('refuses a missing or wrong path token, and a non-push body', () => {
    // Prepare
    const missing = request(fixture('dockerhub', 'push.json'));
    const wrong = request(fixture('dockerhub', 'push.json'), {}, { pathToken: 'x' });
    const notPush = request('{}', {}, { pathToken: TOKEN });

    // Act
    const codes = [missing, wrong, notPush].map((req) => errorCode(() => parseWebhook(src, TOKEN, req)));

    // Assess
    expect(codes).toEqual(['WEBHOOK_UNAUTHENTICATED', 'WEBHOOK_UNAUTHENTICATED', 'WEBHOOK_MALFORMED']);
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = [
      { body: new TextDecoder().decode(fixture('dockerhub', 'push.json')), headers: {}, pathToken: TOKEN },
    ];

    // Act
    const stats = fuzzParser(parseWebhook, src, TOKEN, seeds, { iterations: 3000, seed: 6 });

    // Assess
    expect(stats.jobs).toBeGreaterThan(0);
  });
});
