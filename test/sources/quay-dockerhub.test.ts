import { describe, expect, it } from 'vitest';
import { parseDockerHub } from '../../shared/core/sources/dockerhub.ts';
import { parseWebhook } from '../../shared/core/sources/index.ts';
import { parseQuay } from '../../shared/core/sources/quay.ts';
import { errorCode, fixture, fuzzParser, RECEIVED_AT, reasons, request, source } from './helpers.ts';

const TOKEN = 'url-path-token-5f2c';

describe('quay parser', () => {
  const src = source('quay', { registry: 'quay.io', repositories: ['mesh/*'] });

  it('turns a push into one tag-only job per updated tag', () => {
    const out = parseWebhook(src, TOKEN, request(fixture('quay', 'push.json'), {}, { pathToken: TOKEN }));
    const base = {
      sourceId: 'quay-src',
      registry: 'quay.io',
      repository: 'mesh/basic-auth',
      receivedAt: RECEIVED_AT.toISOString(),
    };
    expect(out).toEqual({
      jobs: [
        { ...base, tag: '1.5.0' },
        { ...base, tag: 'latest' },
      ],
      ignored: [],
    });
  });

  it('acknowledges build notifications', () => {
    const out = parseQuay(
      src,
      TOKEN,
      request(fixture('quay', 'build-complete.json'), {}, { pathToken: TOKEN }),
    );
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['unsupported-event']);
  });

  it('ignores another Quay host and repositories outside the allow-list', () => {
    const selfHosted = source('quay', { registry: 'quay.example.com', repositories: ['mesh/*'] });
    expect(
      reasons(parseQuay(selfHosted, TOKEN, request(fixture('quay', 'push.json'), {}, { pathToken: TOKEN }))),
    ).toEqual(['other-registry', 'other-registry']);
    const narrow = source('quay', { registry: 'quay.io', repositories: ['other/*'] });
    expect(
      reasons(parseQuay(narrow, TOKEN, request(fixture('quay', 'push.json'), {}, { pathToken: TOKEN }))),
    ).toEqual(['not-allowed-repository', 'not-allowed-repository']);
    const bad = { repository: 'mesh/x', docker_url: 'quay.io/mesh/x', updated_tags: ['ok', '.bad', 7] };
    const out = parseQuay(src, TOKEN, request(bad, {}, { pathToken: TOKEN }));
    expect(out.jobs.map((j) => j.tag)).toEqual(['ok']);
    expect(reasons(out)).toEqual(['invalid-reference', 'invalid-reference']);
  });

  it.each([
    ['no token', undefined],
    ['a wrong token', 'nope'],
    ['a token prefix', TOKEN.slice(0, -1)],
  ])('refuses %s', (_n, pathToken) => {
    const extra = pathToken === undefined ? {} : { pathToken };
    expect(errorCode(() => parseQuay(src, TOKEN, request(fixture('quay', 'push.json'), {}, extra)))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    const seeds = ['push.json', 'build-complete.json'].map((n) => ({
      body: new TextDecoder().decode(fixture('quay', n)),
      headers: {},
      pathToken: TOKEN,
    }));
    const stats = fuzzParser(parseQuay, src, TOKEN, seeds, { iterations: 3000, seed: 5 });
    expect(stats.jobs).toBeGreaterThan(0);
  });
});

describe('dockerhub parser', () => {
  const src = source('dockerhub', { registry: 'docker.io', repositories: ['meshplugins/*', 'library/*'] });

  it('turns a push into one tag-only job', () => {
    const out = parseWebhook(
      src,
      TOKEN,
      request(fixture('dockerhub', 'push.json'), {}, { pathToken: TOKEN }),
    );
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
    const body = { push_data: { tag: '3.20' }, repository: { repo_name: 'alpine' } };
    expect(parseDockerHub(src, TOKEN, request(body, {}, { pathToken: TOKEN })).jobs[0]?.repository).toBe(
      'library/alpine',
    );
  });

  it('ignores repositories outside the allow-list and bad tags', () => {
    const other = { push_data: { tag: '1' }, repository: { repo_name: 'someone/else' } };
    expect(reasons(parseDockerHub(src, TOKEN, request(other, {}, { pathToken: TOKEN })))).toEqual([
      'not-allowed-repository',
    ]);
    const bad = { push_data: { tag: 'a b' }, repository: { repo_name: 'meshplugins/x' } };
    expect(reasons(parseDockerHub(src, TOKEN, request(bad, {}, { pathToken: TOKEN })))).toEqual([
      'invalid-reference',
    ]);
  });

  it('refuses a missing or wrong path token, and a non-push body', () => {
    expect(errorCode(() => parseDockerHub(src, TOKEN, request(fixture('dockerhub', 'push.json'))))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
    expect(
      errorCode(() =>
        parseDockerHub(src, TOKEN, request(fixture('dockerhub', 'push.json'), {}, { pathToken: 'x' })),
      ),
    ).toBe('WEBHOOK_UNAUTHENTICATED');
    expect(errorCode(() => parseDockerHub(src, TOKEN, request('{}', {}, { pathToken: TOKEN })))).toBe(
      'WEBHOOK_MALFORMED',
    );
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    const seeds = [
      { body: new TextDecoder().decode(fixture('dockerhub', 'push.json')), headers: {}, pathToken: TOKEN },
    ];
    const stats = fuzzParser(parseDockerHub, src, TOKEN, seeds, { iterations: 3000, seed: 6 });
    expect(stats.jobs).toBeGreaterThan(0);
  });
});
