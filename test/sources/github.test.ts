import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fromApiGatewayBody } from '../../functions/handlers/webhook.ts';
import { parseWebhook, WebhookReceiver } from '../../shared/core/sources/index.ts';
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

const SECRET = 'gh-webhook-secret';
const src = source('github', { registry: 'ghcr.io', repositories: ['acme/**'] });
const baseHeaders = fixtureJson<Record<string, string>>('github', 'headers.json');

function sign(body: Uint8Array | string, secret = SECRET): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function delivery(name: string, event = 'registry_package', extra: Record<string, string> = {}) {
  const body = fixture('github', name);
  return request(body, {
    ...baseHeaders,
    'X-GitHub-Event': event,
    'X-Hub-Signature-256': sign(body),
    ...extra,
  });
}

describe('github parser', () => {
  it('turns a signed registry_package publish into exactly one job', () => {
    // Prepare
    const req = delivery('registry_package-published.json');

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out).toEqual({
      deliveryId: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
      jobs: [
        {
          sourceId: 'github-src',
          registry: 'ghcr.io',
          repository: 'acme/basic-auth',
          tag: '1.12.0',
          digest: 'sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7',
          deliveryId: '72d3162e-cc78-11e3-81ab-4c9367dc0958',
          receivedAt: RECEIVED_AT.toISOString(),
        },
      ],
      ignored: [],
    });
  });

  it('handles the package event, lowercasing the owner as GHCR does', () => {
    // Prepare
    const req = delivery('package-published.json', 'package');

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([
      expect.objectContaining({
        registry: 'ghcr.io',
        repository: 'acme/jwt-filter',
        tag: 'v0.4.1',
        digest: 'sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0',
      }),
    ]);
  });

  it('mirrors a multi-arch push once: the tagged index, not the untagged platform manifests', () => {
    // Prepare
    const platformReq = delivery('package-published-untagged.json', 'package');
    const indexReq = delivery('package-published.json', 'package');

    // Act
    const platform = parseWebhook(src, SECRET, platformReq);
    const index = parseWebhook(src, SECRET, indexReq);

    // Assess
    expect(platform.jobs).toEqual([]);
    expect(reasons(platform)).toEqual(['untagged']);
    expect(index.jobs).toHaveLength(1);
  });

  it('acknowledges ping', () => {
    // Prepare
    const req = delivery('ping.json', 'ping');

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['ping']);
  });

  it('ignores other events and non-container packages', () => {
    // Prepare
    const push = delivery('ping.json', 'push');
    const npm = JSON.stringify({
      action: 'published',
      package: { name: 'x', namespace: 'acme', package_type: 'npm', package_version: {} },
    });
    const npmReq = request(npm, { 'X-GitHub-Event': 'package', 'X-Hub-Signature-256': sign(npm) });

    // Act
    const pushOut = parseWebhook(src, SECRET, push);
    const npmOut = parseWebhook(src, SECRET, npmReq);

    // Assess
    expect(reasons(pushOut)).toEqual(['unsupported-event']);
    expect(reasons(npmOut)).toEqual(['not-a-container-package']);
  });

  it('ignores a package on another registry host and outside the allow-list', () => {
    // Prepare
    const other = source('github', { registry: 'containers.ghes.example.com', repositories: ['acme/**'] });
    const narrow = source('github', { registry: 'ghcr.io', repositories: ['acme/only-this'] });

    // Act
    const otherOut = parseWebhook(other, SECRET, delivery('registry_package-published.json'));
    const narrowOut = parseWebhook(narrow, SECRET, delivery('registry_package-published.json'));

    // Assess
    expect(reasons(otherOut)).toEqual(['other-registry']);
    expect(reasons(narrowOut)).toEqual(['not-allowed-repository']);
  });

  it('ignores a bad tag', () => {
    // Prepare
    const text = new TextDecoder()
      .decode(fixture('github', 'registry_package-published.json'))
      .replace('"name": "1.12.0"', '"name": "-evil"');
    const req = request(text, { 'X-GitHub-Event': 'registry_package', 'X-Hub-Signature-256': sign(text) });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['invalid-reference']);
  });

  it.each([
    ['no signature', () => ({})],
    ['a wrong secret', (b: Uint8Array) => ({ 'X-Hub-Signature-256': sign(b, 'other') })],
    ['an HMAC over other bytes', () => ({ 'X-Hub-Signature-256': sign('{"action":"published"}') })],
    [
      'an HMAC over re-serialised JSON',
      (b: Uint8Array) => ({
        'X-Hub-Signature-256': sign(JSON.stringify(JSON.parse(new TextDecoder().decode(b)))),
      }),
    ],
    [
      'the legacy SHA-1 header only',
      () => ({ 'X-Hub-Signature': 'sha1=0000000000000000000000000000000000000000' }),
    ],
    ['a truncated signature', (b: Uint8Array) => ({ 'X-Hub-Signature-256': sign(b).slice(0, 40) })],
  ])('refuses %s', (_name, headers) => {
    // Prepare
    const body = fixture('github', 'registry_package-published.json');
    const req = request(body, { 'X-GitHub-Event': 'registry_package', ...headers(body) });

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('refuses when no secret is configured, whatever the signature', () => {
    // Prepare
    const req = delivery('registry_package-published.json');

    // Act
    const code = errorCode(() => parseWebhook(src, '', req));

    // Assess
    expect(code).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('checks the signature over bytes that arrived base64-encoded from API Gateway, once decoded', () => {
    // Prepare
    const raw = fixture('github', 'registry_package-published.json');
    const body = fromApiGatewayBody(Buffer.from(raw).toString('base64'), true);
    const req = request(body, { 'X-GitHub-Event': 'registry_package', 'X-Hub-Signature-256': sign(raw) });

    // Act
    const out = parseWebhook(src, SECRET, req);

    // Assess
    expect(out.jobs).toHaveLength(1);
  });

  it('a replayed delivery id does no work twice, and is acknowledged', () => {
    // Prepare
    const receiver = new WebhookReceiver();

    // Act
    const first = receiver.receive(src, SECRET, delivery('registry_package-published.json'));
    const replay = receiver.receive(src, SECRET, delivery('registry_package-published.json'));

    // Assess
    expect(first.jobs).toHaveLength(1);
    expect(replay).toMatchObject({ duplicate: true, jobs: [], ignored: [{ reason: 'duplicate-delivery' }] });
  });

  it('refuses duplicate keys even when correctly signed', () => {
    // Prepare
    const body = '{"action":"published","action":"deleted"}';
    const req = request(body, { 'X-GitHub-Event': 'package', 'X-Hub-Signature-256': sign(body) });

    // Act
    const code = errorCode(() => parseWebhook(src, SECRET, req));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    // Prepare
    const seeds = [
      ['registry_package-published.json', 'registry_package'],
      ['package-published.json', 'package'],
      ['package-published-untagged.json', 'package'],
      ['ping.json', 'ping'],
    ].map(([name, event]) => ({
      body: new TextDecoder().decode(fixture('github', name!)),
      headers: { 'x-github-event': event!, 'x-github-delivery': 'd-1' } as Record<string, string>,
    }));

    // Act
    const stats = fuzzParser(parseWebhook, src, SECRET, seeds, {
      iterations: 3000,
      seed: 2,
      // Most cases carry a valid signature so the fuzzer reaches the payload handling.
      sign: (c) => ({ ...c, headers: { ...c.headers, 'x-hub-signature-256': sign(c.body) } }),
    });

    // Assess
    expect(stats.rejected).toBeGreaterThan(0);
    expect(stats.jobs).toBeGreaterThan(0);
  });
});
