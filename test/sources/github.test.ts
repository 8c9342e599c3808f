import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseGitHub } from '../../shared/core/sources/github.ts';
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
    const out = parseWebhook(src, SECRET, delivery('registry_package-published.json'));
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
    const out = parseGitHub(src, SECRET, delivery('package-published.json', 'package'));
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
    const platform = parseGitHub(src, SECRET, delivery('package-published-untagged.json', 'package'));
    const index = parseGitHub(src, SECRET, delivery('package-published.json', 'package'));
    expect(platform.jobs).toEqual([]);
    expect(reasons(platform)).toEqual(['untagged']);
    expect(index.jobs).toHaveLength(1);
  });

  it('acknowledges ping', () => {
    const out = parseGitHub(src, SECRET, delivery('ping.json', 'ping'));
    expect(out.jobs).toEqual([]);
    expect(reasons(out)).toEqual(['ping']);
  });

  it('ignores other events and non-container packages', () => {
    expect(reasons(parseGitHub(src, SECRET, delivery('ping.json', 'push')))).toEqual(['unsupported-event']);
    const npm = JSON.stringify({
      action: 'published',
      package: { name: 'x', namespace: 'acme', package_type: 'npm', package_version: {} },
    });
    const out = parseGitHub(
      src,
      SECRET,
      request(npm, { 'X-GitHub-Event': 'package', 'X-Hub-Signature-256': sign(npm) }),
    );
    expect(reasons(out)).toEqual(['not-a-container-package']);
  });

  it('ignores a package on another registry host and outside the allow-list', () => {
    const other = source('github', { registry: 'containers.ghes.example.com', repositories: ['acme/**'] });
    expect(reasons(parseGitHub(other, SECRET, delivery('registry_package-published.json')))).toEqual([
      'other-registry',
    ]);
    const narrow = source('github', { registry: 'ghcr.io', repositories: ['acme/only-this'] });
    expect(reasons(parseGitHub(narrow, SECRET, delivery('registry_package-published.json')))).toEqual([
      'not-allowed-repository',
    ]);
  });

  it('ignores a bad tag', () => {
    const text = new TextDecoder()
      .decode(fixture('github', 'registry_package-published.json'))
      .replace('"name": "1.12.0"', '"name": "-evil"');
    const out = parseGitHub(
      src,
      SECRET,
      request(text, { 'X-GitHub-Event': 'registry_package', 'X-Hub-Signature-256': sign(text) }),
    );
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
    const body = fixture('github', 'registry_package-published.json');
    const req = request(body, { 'X-GitHub-Event': 'registry_package', ...headers(body) });
    expect(errorCode(() => parseGitHub(src, SECRET, req))).toBe('WEBHOOK_UNAUTHENTICATED');
  });

  it('refuses when no secret is configured, whatever the signature', () => {
    expect(errorCode(() => parseGitHub(src, '', delivery('registry_package-published.json')))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });

  it('checks the signature over bytes that arrived base64-encoded from API Gateway, once decoded', async () => {
    const { fromApiGatewayBody } = await import('../../shared/core/sources/index.ts');
    const raw = fixture('github', 'registry_package-published.json');
    const body = fromApiGatewayBody(Buffer.from(raw).toString('base64'), true);
    const out = parseGitHub(
      src,
      SECRET,
      request(body, { 'X-GitHub-Event': 'registry_package', 'X-Hub-Signature-256': sign(raw) }),
    );
    expect(out.jobs).toHaveLength(1);
  });

  it('a replayed delivery id does no work twice, and is acknowledged', () => {
    const receiver = new WebhookReceiver();
    const first = receiver.receive(src, SECRET, delivery('registry_package-published.json'));
    const replay = receiver.receive(src, SECRET, delivery('registry_package-published.json'));
    expect(first.jobs).toHaveLength(1);
    expect(replay).toMatchObject({ duplicate: true, jobs: [], ignored: [{ reason: 'duplicate-delivery' }] });
  });

  it('refuses duplicate keys even when correctly signed', () => {
    const body = '{"action":"published","action":"deleted"}';
    const req = request(body, { 'X-GitHub-Event': 'package', 'X-Hub-Signature-256': sign(body) });
    expect(errorCode(() => parseGitHub(src, SECRET, req))).toBe('WEBHOOK_MALFORMED');
  });

  it('fuzz: only WEBHOOK_* errors; jobs stay on the configured registry and allow-list', () => {
    const seeds = [
      ['registry_package-published.json', 'registry_package'],
      ['package-published.json', 'package'],
      ['package-published-untagged.json', 'package'],
      ['ping.json', 'ping'],
    ].map(([name, event]) => ({
      body: new TextDecoder().decode(fixture('github', name!)),
      headers: { 'x-github-event': event!, 'x-github-delivery': 'd-1' } as Record<string, string>,
    }));
    const stats = fuzzParser(parseGitHub, src, SECRET, seeds, {
      iterations: 3000,
      seed: 2,
      // Most cases carry a valid signature so the fuzzer reaches the payload handling.
      sign: (c) => ({ ...c, headers: { ...c.headers, 'x-hub-signature-256': sign(c.body) } }),
    });
    expect(stats.rejected).toBeGreaterThan(0);
    expect(stats.jobs).toBeGreaterThan(0);
  });
});
