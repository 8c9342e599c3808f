import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseAcr } from '../../shared/core/sources/acr.ts';
import { parseArtifactory } from '../../shared/core/sources/artifactory.ts';
import { parseEcr, parseEcrTrusted } from '../../shared/core/sources/ecr.ts';
import { parseWebhook } from '../../shared/core/sources/index.ts';
import { errorCode, fixture, fuzzParser, RECEIVED_AT, reasons, request, source } from './helpers.ts';

const SECRET = 'static-secret-9d1';
const text = (type: string, name: string) => new TextDecoder().decode(fixture(type, name));

describe('artifactory parser', () => {
  const src = source('artifactory', { registry: 'acme.jfrog.io', repositories: ['wasm-local/plugins/**'] });
  const hmac = (body: Uint8Array | string, key = SECRET) =>
    createHmac('sha256', key).update(body).digest('hex');

  it('turns a docker pushed event into exactly one job (secret header)', () => {
    const out = parseWebhook(
      src,
      SECRET,
      request(fixture('artifactory', 'docker-pushed.json'), { 'X-JFrog-Event-Auth': SECRET }),
    );
    expect(out).toEqual({
      jobs: [
        {
          sourceId: 'artifactory-src',
          registry: 'acme.jfrog.io',
          repository: 'wasm-local/plugins/basic-auth',
          tag: '1.7.0',
          digest: 'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('accepts an HMAC-SHA256 of the raw body', () => {
    const body = fixture('artifactory', 'docker-pushed.json');
    expect(
      parseArtifactory(src, SECRET, request(body, { 'x-jfrog-event-auth': hmac(body) })).jobs,
    ).toHaveLength(1);
  });

  it('acknowledges deletes and ignores other hosts and repositories', () => {
    expect(
      reasons(
        parseArtifactory(
          src,
          SECRET,
          request(fixture('artifactory', 'docker-deleted.json'), { 'x-jfrog-event-auth': SECRET }),
        ),
      ),
    ).toEqual(['delete']);
    const other = source('artifactory', { registry: 'other.jfrog.io', repositories: ['**'] });
    expect(
      reasons(
        parseArtifactory(
          other,
          SECRET,
          request(fixture('artifactory', 'docker-pushed.json'), { 'x-jfrog-event-auth': SECRET }),
        ),
      ),
    ).toEqual(['other-registry']);
    const narrow = source('artifactory', { registry: 'acme.jfrog.io', repositories: ['wasm-local/other/*'] });
    expect(
      reasons(
        parseArtifactory(
          narrow,
          SECRET,
          request(fixture('artifactory', 'docker-pushed.json'), { 'x-jfrog-event-auth': SECRET }),
        ),
      ),
    ).toEqual(['not-allowed-repository']);
  });

  it.each([
    ['no header', () => ({})],
    ['a wrong secret', () => ({ 'x-jfrog-event-auth': 'nope' })],
    ['an HMAC with another key', (b: Uint8Array) => ({ 'x-jfrog-event-auth': hmac(b, 'other') })],
    ['an HMAC over other bytes', () => ({ 'x-jfrog-event-auth': hmac('{}') })],
    ['the secret in Authorization', () => ({ authorization: `Bearer ${SECRET}` })],
  ])('refuses %s', (_n, headers) => {
    const body = fixture('artifactory', 'docker-pushed.json');
    expect(errorCode(() => parseArtifactory(src, SECRET, request(body, headers(body))))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    const seeds = ['docker-pushed.json', 'docker-deleted.json'].map((n) => ({
      body: text('artifactory', n),
      headers: { 'x-jfrog-event-auth': SECRET },
    }));
    const stats = fuzzParser(parseArtifactory, src, SECRET, seeds, {
      iterations: 3000,
      seed: 7,
      sign: (c) => ({ ...c, headers: { 'x-jfrog-event-auth': hmac(c.body) } }),
    });
    expect(stats.jobs).toBeGreaterThan(0);
  });
});

describe('acr parser', () => {
  const src = source('acr', { registry: 'meshplugins.azurecr.io', repositories: ['plugins/*'] });
  const bearer = { Authorization: `Bearer ${SECRET}` };

  it('turns a push event into exactly one job', () => {
    const out = parseWebhook(src, SECRET, request(fixture('acr', 'push.json'), bearer));
    expect(out).toEqual({
      deliveryId: 'cb8c3971-9adc-488b-bdd8-43cbb4974ff5',
      jobs: [
        {
          sourceId: 'acr-src',
          registry: 'meshplugins.azurecr.io',
          repository: 'plugins/basic-auth',
          tag: '1.8.0',
          digest: 'sha256:c6f4d5c8786bb9e621a45ece0dbaa4e1cdc624ad20da9fe62e9d25490f330a7e',
          deliveryId: 'cb8c3971-9adc-488b-bdd8-43cbb4974ff5',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('acknowledges ping and chart pushes', () => {
    expect(reasons(parseAcr(src, SECRET, request(fixture('acr', 'ping.json'), bearer)))).toEqual(['ping']);
    expect(reasons(parseAcr(src, SECRET, request(fixture('acr', 'chart-push.json'), bearer)))).toEqual([
      'chart-push',
    ]);
  });

  it('uses the configured custom header, Bearer or verbatim', () => {
    const custom = source('acr', {
      registry: 'meshplugins.azurecr.io',
      repositories: ['plugins/*'],
      webhookHeader: 'X-Mirror-Token',
    });
    expect(
      parseAcr(custom, SECRET, request(fixture('acr', 'push.json'), { 'x-mirror-token': SECRET })).jobs,
    ).toHaveLength(1);
    expect(
      parseAcr(custom, SECRET, request(fixture('acr', 'push.json'), { 'x-mirror-token': `Bearer ${SECRET}` }))
        .jobs,
    ).toHaveLength(1);
    expect(errorCode(() => parseAcr(custom, SECRET, request(fixture('acr', 'push.json'), bearer)))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });

  it('ignores another registry host and repositories outside the allow-list', () => {
    const other = source('acr', { registry: 'other.azurecr.io', repositories: ['plugins/*'] });
    expect(reasons(parseAcr(other, SECRET, request(fixture('acr', 'push.json'), bearer)))).toEqual([
      'other-registry',
    ]);
    const narrow = source('acr', { registry: 'meshplugins.azurecr.io', repositories: ['x/*'] });
    expect(reasons(parseAcr(narrow, SECRET, request(fixture('acr', 'push.json'), bearer)))).toEqual([
      'not-allowed-repository',
    ]);
  });

  it.each([
    ['no header', {}],
    ['a wrong secret', { Authorization: 'Bearer nope' }],
  ])('refuses %s', (_n, headers) => {
    expect(errorCode(() => parseAcr(src, SECRET, request(fixture('acr', 'push.json'), headers)))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    const seeds = ['push.json', 'ping.json', 'chart-push.json'].map((n) => ({
      body: text('acr', n),
      headers: bearer,
    }));
    const stats = fuzzParser(parseAcr, src, SECRET, seeds, { iterations: 3000, seed: 8 });
    expect(stats.jobs).toBeGreaterThan(0);
  });
});

describe('ecr parser', () => {
  const src = source('ecr', {
    registry: '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    repositories: ['plugins/**'],
  });
  const bearer = { Authorization: `Bearer ${SECRET}` };
  const expected = {
    sourceId: 'ecr-src',
    registry: '123456789012.dkr.ecr.eu-west-1.amazonaws.com',
    repository: 'plugins/basic-auth',
    tag: '1.9.0',
    digest: 'sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd12345678',
    deliveryId: '13cde686-328b-6117-af20-0e5566167482',
    receivedAt: RECEIVED_AT.toISOString(),
  };

  it('over HTTP, a push with the static header becomes exactly one job', () => {
    const out = parseWebhook(src, SECRET, request(fixture('ecr', 'image-push.json'), bearer));
    expect(out).toEqual({ deliveryId: expected.deliveryId, jobs: [expected], ignored: [] });
  });

  it('from SQS (IAM-authenticated), the trusted path needs no secret', () => {
    const out = parseEcrTrusted(src, { body: text('ecr', 'image-push.json'), receivedAt: RECEIVED_AT });
    expect(out.jobs).toEqual([expected]);
  });

  it('over HTTP, refuses a missing or wrong header', () => {
    expect(errorCode(() => parseEcr(src, SECRET, request(fixture('ecr', 'image-push.json'))))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
    expect(
      errorCode(() =>
        parseEcr(src, SECRET, request(fixture('ecr', 'image-push.json'), { Authorization: 'Bearer x' })),
      ),
    ).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('acknowledges failed pushes and deletes; ignores other accounts and repositories', () => {
    const trusted = (name: string, s = src) =>
      parseEcrTrusted(s, { body: fixture('ecr', name), receivedAt: RECEIVED_AT });
    expect(reasons(trusted('image-push-failed.json'))).toEqual(['failed']);
    expect(reasons(trusted('image-delete.json'))).toEqual(['delete']);
    const otherAccount = source('ecr', {
      registry: '210987654321.dkr.ecr.eu-west-1.amazonaws.com',
      repositories: ['plugins/**'],
    });
    expect(reasons(trusted('image-push.json', otherAccount))).toEqual(['other-registry']);
    const narrow = source('ecr', { registry: src.registry, repositories: ['other/*'] });
    expect(reasons(trusted('image-push.json', narrow))).toEqual(['not-allowed-repository']);
  });

  it('ignores a push without a tag (the platform manifests of a multi-arch push)', () => {
    const event = JSON.parse(text('ecr', 'image-push.json'));
    delete event.detail['image-tag'];
    expect(reasons(parseEcrTrusted(src, { body: JSON.stringify(event), receivedAt: RECEIVED_AT }))).toEqual([
      'untagged',
    ]);
    const acrSrc = source('acr', { registry: 'meshplugins.azurecr.io', repositories: ['plugins/*'] });
    const acrEvent = JSON.parse(text('acr', 'push.json'));
    delete acrEvent.target.tag;
    expect(reasons(parseAcr(acrSrc, SECRET, request(acrEvent, bearer)))).toEqual(['untagged']);
  });

  it('refuses what is not an EventBridge event', () => {
    expect(errorCode(() => parseEcrTrusted(src, { body: '{"detail":{}}', receivedAt: RECEIVED_AT }))).toBe(
      'WEBHOOK_MALFORMED',
    );
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    const seeds = ['image-push.json', 'image-push-failed.json', 'image-delete.json'].map((n) => ({
      body: text('ecr', n),
      headers: bearer,
    }));
    const stats = fuzzParser(parseEcr, src, SECRET, seeds, { iterations: 3000, seed: 9 });
    expect(stats.jobs).toBeGreaterThan(0);
    const trusted = fuzzParser(
      (s, _secret, req) => parseEcrTrusted(s, { body: req.body, receivedAt: req.receivedAt }),
      src,
      SECRET,
      seeds,
      { iterations: 2000, seed: 10 },
    );
    expect(trusted.jobs).toBeGreaterThan(0);
  });
});
