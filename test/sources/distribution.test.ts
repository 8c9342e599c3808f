import { describe, expect, it } from 'vitest';
import { distributionSender } from '../../shared/core/sources/distribution.ts';
import { parseWebhook, senders } from '../../shared/core/sources/index.ts';
import { errorCode, fixture, fuzzParser, RECEIVED_AT, reasons, request, source } from './helpers.ts';

const SECRET = 'dist-hook-token';
const auth = { Authorization: `Bearer ${SECRET}` };
const src = source('distribution');

describe('distribution parser', () => {
  it('turns a manifest push into exactly one job', () => {
    // Prepare
    const req = request(fixture('distribution', 'push-manifest-v1.json'), auth);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out).toEqual({
      deliveryId: '320678d8-ca14-430f-8bb6-4ca139cd83f7',
      jobs: [
        {
          sourceId: 'distribution-src',
          registry: '127.0.0.1:5000',
          repository: 'plugins/basic-auth',
          tag: '1.12.0',
          digest: 'sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf',
          deliveryId: '320678d8-ca14-430f-8bb6-4ca139cd83f7',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('is the registered sender, authenticated by Bearer token only', () => {
    // Act
    const registered = senders.distribution;

    // Assess
    expect(registered).toBe(distributionSender);
    expect(registered.auth).toEqual({ kind: 'static-header', bare: false });
  });

  it('keeps only the manifest push of a v2 batch and says why the rest was ignored', () => {
    // Prepare
    const req = request(fixture('distribution', 'push-v2-batch.json'), {
      ...auth,
      'content-type': 'application/vnd.docker.distribution.events.v2+json',
    });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toHaveLength(1);
    expect(out.jobs[0]).toMatchObject({
      registry: '127.0.0.1:5000',
      repository: 'plugins/rate-limit',
      tag: 'v2.0.1',
      digest: `sha256:${'3'.repeat(64)}`,
      deliveryId: '9a3e7c55-1b8d-4d0a-8f66-2e9b7c1d3e33',
    });
    expect(reasons(out)).toEqual(['blob-push', 'blob-push', 'pull', 'mount', 'delete']);
    expect(out.deliveryId).toMatch(/^batch-[0-9a-f]{32}$/);
  });

  it('accepts the GitLab registry variant under a public hostname', () => {
    // Prepare
    const gitlab = source('distribution', {
      registry: 'registry.gitlab.example.com',
      repositories: ['acme/mesh/plugins/*'],
    });
    const req = request(fixture('distribution', 'gitlab-push.json'), auth);

    // Act
    const out = parseWebhook(gitlab, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([
      expect.objectContaining({
        registry: 'registry.gitlab.example.com',
        repository: 'acme/mesh/plugins/jwt-filter',
        tag: 'main',
        digest: 'sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270',
      }),
    ]);
  });

  it('ignores a payload naming another registry host', () => {
    // Prepare
    const req = request(fixture('distribution', 'push-other-registry.json'), auth);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(out.ignored).toEqual([{ reason: 'other-registry', detail: 'evil.example.net' }]);
  });

  it('accepts a push with no host in the payload, pinned to the configured registry', () => {
    // Prepare
    const body = {
      events: [
        {
          id: 'x1',
          action: 'push',
          target: {
            mediaType: 'application/vnd.oci.image.index.v1+json',
            repository: 'plugins/a',
            tag: 'v1',
            digest: `sha256:${'a'.repeat(64)}`,
          },
        },
      ],
    };

    // Act
    const out = parseWebhook(src, SECRET, request(body, auth));

    // Assess
    expect(out.jobs).toEqual([
      expect.objectContaining({ registry: '127.0.0.1:5000', repository: 'plugins/a', tag: 'v1' }),
    ]);
  });

  it('ignores manifests pushed by digest only: the platform manifests of an index precede the tagged push', () => {
    // Prepare
    const ev = (id: string, mediaType: string, digest: string, tag?: string) => ({
      id,
      action: 'push',
      target: { mediaType, repository: 'plugins/multi', digest, ...(tag ? { tag } : {}) },
      request: { host: '127.0.0.1:5000' },
    });
    const body = {
      events: [
        ev('c1', 'application/vnd.oci.image.manifest.v1+json', `sha256:${'1'.repeat(64)}`),
        ev('c2', 'application/vnd.oci.image.manifest.v1+json', `sha256:${'2'.repeat(64)}`),
        ev('ix', 'application/vnd.oci.image.index.v1+json', `sha256:${'3'.repeat(64)}`, '1.0'),
      ],
    };

    // Act
    const out = parseWebhook(src, SECRET, request(body, auth));

    // Assess
    expect(out.jobs.map((j) => [j.tag, j.digest])).toEqual([['1.0', `sha256:${'3'.repeat(64)}`]]);
    expect(reasons(out)).toEqual(['untagged', 'untagged']);
  });

  it('ignores repositories outside the allow-list and bad references', () => {
    // Prepare
    const ev = (repository: string, tag?: string, digest = `sha256:${'b'.repeat(64)}`) => ({
      id: `${repository}-${tag}`,
      action: 'push',
      target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', repository, tag, digest },
      request: { host: '127.0.0.1:5000' },
    });
    const body = {
      events: [
        ev('secret/other', '1'),
        ev('plugins/Bad', '1'),
        ev('plugins/ok', '-bad'),
        ev('plugins/ok', '1', 'sha256:xyz'),
        ev('plugins/ok', undefined, ''),
        ev('plugins/ok', 'good'),
      ],
    };

    // Act
    const out = parseWebhook(src, SECRET, request(body, auth));

    // Assess
    expect(out.jobs.map((j) => `${j.repository}:${j.tag}`)).toEqual(['plugins/ok:good']);
    expect(reasons(out)).toEqual([
      'not-allowed-repository',
      'invalid-reference',
      'invalid-reference',
      'invalid-reference',
      'invalid-reference',
    ]);
  });

  it('acknowledges an empty envelope', () => {
    // Prepare
    const req = request({ events: [] }, auth);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['empty']);
  });

  it.each([
    ['no Authorization header', {}],
    ['a wrong token', { Authorization: 'Bearer nope' }],
    ['the bare secret (Bearer required)', { Authorization: SECRET }],
    ['another scheme', { Authorization: `Basic ${SECRET}` }],
    ['a token that only starts with the secret', { Authorization: `Bearer ${SECRET}x` }],
  ])('refuses %s', (_name, headers) => {
    // Prepare
    const req = request(fixture('distribution', 'push-manifest-v1.json'), headers);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('refuses everything when the source has no secret configured', () => {
    // Prepare
    const req = request(fixture('distribution', 'push-manifest-v1.json'), { Authorization: 'Bearer ' });

    // Act
    const code = errorCode(() => parseWebhook(src, '', req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('reads header names case-insensitively', () => {
    // Prepare
    const req = request(
      fixture('distribution', 'push-manifest-v1.json'),
      {},
      { headers: { AUTHORIZATION: `Bearer ${SECRET}` } },
    );

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toHaveLength(1);
  });

  it('caps the body size before anything else', () => {
    // Prepare
    const big = new Uint8Array(1024 * 1024 + 1).fill(0x20);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, request(big, {})));

    // Assess
    expect(code).toBe('WEBHOOK_TOO_LARGE');
  });

  it('authenticates before it reads the body', () => {
    // Prepare
    const req = request('not JSON', { Authorization: 'Bearer nope' });

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it.each([
    ['not JSON', 'hello'],
    ['not an envelope', '{"event":{}}'],
    ['events not an array', '{"events":{}}'],
    ['a duplicate key', '{"events":[],"events":[]}'],
    ['too deep', `{"events":[${'['.repeat(100)}${']'.repeat(100)}]}`],
    ['an event that is not an object', '{"events":[5]}'],
    ['an event without action', '{"events":[{"target":{}}]}'],
    ['a push without target', '{"events":[{"action":"push"}]}'],
    ['a top-level array', '[]'],
    ['empty', ''],
  ])('refuses a body that is %s', (_name, body) => {
    // Prepare
    const req = request(body, auth);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('never throws anything but WEBHOOK_* errors and never escapes the registry or allow-list (fuzz)', () => {
    // Prepare
    const seeds = [
      'push-manifest-v1.json',
      'push-v2-batch.json',
      'gitlab-push.json',
      'push-other-registry.json',
    ].map((name) => ({
      body: new TextDecoder().decode(fixture('distribution', name)),
      headers: { ...auth },
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, { iterations: 3000, seed: 1 });

    // Assess
    expect(stats.rejected).toBeGreaterThan(0);
    expect(stats.jobs + stats.ignored).toBeGreaterThan(0);
  });
});
