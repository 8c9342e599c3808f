import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseEcrTrusted } from '../../shared/core/sources/ecr.ts';
import { parseWebhook } from '../../shared/core/sources/index.ts';
import { errorCode, fixture, fuzzParser, RECEIVED_AT, reasons, request, source } from './helpers.ts';

const SECRET = 'static-secret-9d1';
const text = (type: string, name: string) => new TextDecoder().decode(fixture(type, name));

describe('artifactory parser', () => {
  const src = source('artifactory', { registry: 'acme.jfrog.io', repositories: ['wasm-local/plugins/**'] });
  const hmac = (body: Uint8Array | string, key = SECRET) =>
    createHmac('sha256', key).update(body).digest('hex');

  it('turns a docker pushed event into exactly one job (secret header)', () => {
    // Prepare
    const req = request(fixture('artifactory', 'docker-pushed.json'), { 'X-JFrog-Event-Auth': SECRET });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
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
    // Prepare
    const body = fixture('artifactory', 'docker-pushed.json');
    const plain = request(body, { 'x-jfrog-event-auth': hmac(body) });
    const prefixed = request(body, { 'x-jfrog-event-auth': `sha256=${hmac(body)}` });

    // Act
    const plainOut = parseWebhook(src, SECRET, plain);
    const prefixedOut = parseWebhook(src, SECRET, prefixed);

    // Assess
    expect(plainOut.jobs).toHaveLength(1);
    expect(prefixedOut.jobs).toHaveLength(1);
  });

  it('acknowledges deletes and ignores other hosts and repositories', () => {
    // Prepare
    const auth = { 'x-jfrog-event-auth': SECRET };
    const other = source('artifactory', { registry: 'other.jfrog.io', repositories: ['**'] });
    const narrow = source('artifactory', { registry: 'acme.jfrog.io', repositories: ['wasm-local/other/*'] });

    // Act
    const deleted = parseWebhook(src, SECRET, request(fixture('artifactory', 'docker-deleted.json'), auth));
    const otherOut = parseWebhook(other, SECRET, request(fixture('artifactory', 'docker-pushed.json'), auth));
    const narrowOut = parseWebhook(
      narrow,
      SECRET,
      request(fixture('artifactory', 'docker-pushed.json'), auth),
    );

    // Assess
    expect(reasons(deleted)).toEqual(['delete']);
    expect(reasons(otherOut)).toEqual(['other-registry']);
    expect(reasons(narrowOut)).toEqual(['not-allowed-repository']);
  });

  it.each([
    ['no header', () => ({})],
    ['a wrong secret', () => ({ 'x-jfrog-event-auth': 'nope' })],
    ['an HMAC with another key', (b: Uint8Array) => ({ 'x-jfrog-event-auth': hmac(b, 'other') })],
    ['an HMAC over other bytes', () => ({ 'x-jfrog-event-auth': hmac('{}') })],
    ['the secret in Authorization', () => ({ authorization: `Bearer ${SECRET}` })],
  ])('refuses %s', (_n, headers) => {
    // Prepare
    const body = fixture('artifactory', 'docker-pushed.json');
    const req = request(body, headers(body));

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = ['docker-pushed.json', 'docker-deleted.json'].map((n) => ({
      body: text('artifactory', n),
      headers: { 'x-jfrog-event-auth': SECRET },
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, {
      iterations: 3000,
      seed: 7,
      sign: (c) => ({ ...c, headers: { 'x-jfrog-event-auth': hmac(c.body) } }),
    });

    // Assess
    expect(stats.jobs).toBeGreaterThan(0);
  });
});

describe('acr parser', () => {
  const src = source('acr', { registry: 'meshplugins.azurecr.io', repositories: ['plugins/*'] });
  const bearer = { Authorization: `Bearer ${SECRET}` };

  it('turns a push event into exactly one job', () => {
    // Prepare
    const req = request(fixture('acr', 'push.json'), bearer);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
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
    // Prepare
    const ping = request(fixture('acr', 'ping.json'), bearer);
    const chart = request(fixture('acr', 'chart-push.json'), bearer);

    // Act
    const pingOut = parseWebhook(src, SECRET, ping);
    const chartOut = parseWebhook(src, SECRET, chart);

    // Assess
    expect(reasons(pingOut)).toEqual(['ping']);
    expect(reasons(chartOut)).toEqual(['chart-push']);
  });

  it('uses the configured custom header, Bearer or verbatim', () => {
    // Prepare
    const custom = source('acr', {
      registry: 'meshplugins.azurecr.io',
      repositories: ['plugins/*'],
      webhookHeader: 'X-Mirror-Token',
    });
    const push = () => fixture('acr', 'push.json');

    // Act
    const verbatim = parseWebhook(custom, SECRET, request(push(), { 'x-mirror-token': SECRET }));
    const asBearer = parseWebhook(custom, SECRET, request(push(), { 'x-mirror-token': `Bearer ${SECRET}` }));
    const inAuthorization = errorCode(() => parseWebhook(custom, SECRET, request(push(), bearer)));

    // Assess
    expect(verbatim.jobs).toHaveLength(1);
    expect(asBearer.jobs).toHaveLength(1);
    expect(inAuthorization).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('ignores another registry host and repositories outside the allow-list', () => {
    // Prepare
    const other = source('acr', { registry: 'other.azurecr.io', repositories: ['plugins/*'] });
    const narrow = source('acr', { registry: 'meshplugins.azurecr.io', repositories: ['x/*'] });

    // Act
    const otherOut = parseWebhook(other, SECRET, request(fixture('acr', 'push.json'), bearer));
    const narrowOut = parseWebhook(narrow, SECRET, request(fixture('acr', 'push.json'), bearer));

    // Assess
    expect(reasons(otherOut)).toEqual(['other-registry']);
    expect(reasons(narrowOut)).toEqual(['not-allowed-repository']);
  });

  it.each([
    ['no header', {}],
    ['a wrong secret', { Authorization: 'Bearer nope' }],
  ])('refuses %s', (_n, headers) => {
    // Prepare
    const req = request(fixture('acr', 'push.json'), headers);

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = ['push.json', 'ping.json', 'chart-push.json'].map((n) => ({
      body: text('acr', n),
      headers: bearer,
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, { iterations: 3000, seed: 8 });

    // Assess
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
  const trusted = (name: string, s = src) =>
    parseEcrTrusted(s, { body: fixture('ecr', name), receivedAt: RECEIVED_AT });

  it('over HTTP, a push with the static header becomes exactly one job', () => {
    // Prepare
    const req = request(fixture('ecr', 'image-push.json'), bearer);

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out).toEqual({ deliveryId: expected.deliveryId, jobs: [expected], ignored: [] });
  });

  it('from SQS (IAM-authenticated), the trusted path needs no secret', () => {
    // Prepare
    const event = { body: text('ecr', 'image-push.json'), receivedAt: RECEIVED_AT };

    // Act
    const out = parseEcrTrusted(src, event);

    // Assess
    expect(out.jobs).toEqual([expected]);
  });

  it('over HTTP, refuses a missing or wrong header', () => {
    // Prepare
    const missing = request(fixture('ecr', 'image-push.json'));
    const wrong = request(fixture('ecr', 'image-push.json'), { Authorization: 'Bearer x' });

    // Act
    const missingCode = errorCode(() => parseWebhook(src, SECRET, missing));
    const wrongCode = errorCode(() => parseWebhook(src, SECRET, wrong));

    // Assess
    expect(missingCode).toBe('WEBHOOK_UNAUTHENTICATED');
    expect(wrongCode).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('acknowledges failed pushes and deletes; ignores other accounts and repositories', () => {
    // Prepare
    const otherAccount = source('ecr', {
      registry: '210987654321.dkr.ecr.eu-west-1.amazonaws.com',
      repositories: ['plugins/**'],
    });
    const narrow = source('ecr', { registry: src.registry, repositories: ['other/*'] });

    // Act
    const failed = trusted('image-push-failed.json');
    const deleted = trusted('image-delete.json');
    const otherOut = trusted('image-push.json', otherAccount);
    const narrowOut = trusted('image-push.json', narrow);

    // Assess
    expect(reasons(failed)).toEqual(['failed']);
    expect(reasons(deleted)).toEqual(['delete']);
    expect(reasons(otherOut)).toEqual(['other-registry']);
    expect(reasons(narrowOut)).toEqual(['not-allowed-repository']);
  });

  it('ignores a push without a tag (the platform manifests of a multi-arch push)', () => {
    // Prepare
    const event = JSON.parse(text('ecr', 'image-push.json'));
    delete event.detail['image-tag'];
    const acrSrc = source('acr', { registry: 'meshplugins.azurecr.io', repositories: ['plugins/*'] });
    const acrEvent = JSON.parse(text('acr', 'push.json'));
    delete acrEvent.target.tag;

    // Act
    const ecrOut = parseEcrTrusted(src, { body: JSON.stringify(event), receivedAt: RECEIVED_AT });
    const acrOut = parseWebhook(acrSrc, SECRET, request(acrEvent, bearer));

    // Assess
    expect(reasons(ecrOut)).toEqual(['untagged']);
    expect(reasons(acrOut)).toEqual(['untagged']);
  });

  it('refuses what is not an EventBridge event', () => {
    // Prepare
    const event = { body: '{"detail":{}}', receivedAt: RECEIVED_AT };

    // Act
    const code = errorCode(() => parseEcrTrusted(src, event));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('caps the body size on the trusted path too', () => {
    // Prepare
    const event = { body: new Uint8Array(1024 * 1024 + 1).fill(0x20), receivedAt: RECEIVED_AT };

    // Act
    const code = errorCode(() => parseEcrTrusted(src, event));

    // Assess
    expect(code).toBe('WEBHOOK_TOO_LARGE');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = ['image-push.json', 'image-push-failed.json', 'image-delete.json'].map((n) => ({
      body: text('ecr', n),
      headers: bearer,
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, { iterations: 3000, seed: 9 });
    const trustedStats = fuzzParser(
      (s, _secret, req) => parseEcrTrusted(s, { body: req.body, receivedAt: req.receivedAt }),
      src,
      SECRET,
      seeds,
      { iterations: 2000, seed: 10 },
    );

    // Assess
    expect(stats.jobs).toBeGreaterThan(0);
    expect(trustedStats.jobs).toBeGreaterThan(0);
  });
});
