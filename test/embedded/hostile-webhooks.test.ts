import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedMirror } from '../../shared/embedded/runtime.ts';
import { type Harness, pushWasm, startHarness, type TestRegistry } from '../support/index.ts';
import {
  DISTRIBUTION_EVENTS_V1,
  distributionEnvelope,
  sha256Of,
  waitForManifest,
  waitForQueuesSettled,
} from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const TOKEN = 'hostile-suite-token-abcdef';

describe('hostile webhooks', () => {
  let registry: TestRegistry;
  let mirror: EmbeddedMirror;
  let digest: string;
  let bytes: Uint8Array;

  const post = (body: string | Uint8Array, headers: Record<string, string> = {}, path = '/hooks/local') =>
    fetch(`${mirror.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': DISTRIBUTION_EVENTS_V1, authorization: `Bearer ${TOKEN}`, ...headers },
      body: typeof body === 'string' ? body : new Uint8Array(body),
    });
  // fetch normalises dot segments away; a hostile client does not.
  const raw = (method: string, path: string) =>
    new Promise<number>((resolve, reject) => {
      const req = request(
        `${mirror.url}${path}`,
        { method, path, headers: { authorization: `Bearer ${TOKEN}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', reject);
      req.end(method === 'POST' ? valid() : undefined);
    });
  const queuesSettled = () => waitForQueuesSettled(mirror.url);
  const metric = async (pattern: RegExp): Promise<number> => {
    const text = await (await fetch(`${mirror.url}/metrics`)).text();
    const match = pattern.exec(text);
    return match === null ? 0 : Number(match[1]);
  };

  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({
      mirrorName: 'hostile',
      token: TOKEN,
      sources: `  - { id: local, type: distribution, registry: "{registry}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN, rateLimitPerMinute: 100000 }`,
    });
    ({ registry, mirror } = harness);
    bytes = proxyWasmModule({ marker: 'hostile' });
    ({ digest } = await pushWasm(registry.host, 'plugins/flood:1.0', bytes, 'wasm-artifact'));
  });

  afterAll(() => harness?.stop());

  const valid = () =>
    distributionEnvelope([{ repository: 'plugins/flood', tag: '1.0', digest, host: registry.host }]);

  it('refuses a wrong, missing or differently-cased token with 401 and says nothing more', async () => {
    // Act / Assess
    for (const authorization of [
      `Bearer ${TOKEN}x`,
      '',
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN.slice(0, -1)}`,
      'Bearer ',
    ]) {
      const res = await post(valid(), { authorization });
      expect(res.status, authorization).toBe(401);
      expect(await res.json()).toEqual({ code: 'WEBHOOK_UNAUTHENTICATED', message: 'authentication failed' });
    }
  });

  it('answers 404 for an unknown source and 405 for a GET', async () => {
    // Act / Assess
    expect((await post(valid(), {}, '/hooks/nope')).status).toBe(404);
    // Dot segments are resolved before routing: never a webhook, never a file outside the layout.
    expect(await raw('POST', '/hooks/../keys.json')).toBe(405);
    expect(await raw('GET', '/hooks/%2e%2e/private/signing-key.pem')).toBe(404);
    expect(await raw('GET', '/modules/sha256/../../private/signing-key.pem')).toBe(404);
    expect(await raw('GET', '/manifests/..%2f..%2fprivate%2fsigning-key.pem')).toBe(404);
    expect((await post(valid(), {}, '/hooks/local/a/b')).status).toBe(404);
    expect((await fetch(`${mirror.url}/hooks/local`)).status).toBe(405);
  });

  it('refuses bodies that are not an event envelope with 400', async () => {
    // Act / Assess
    for (const body of [
      '',
      'not json',
      '[]',
      '{"events": 5}',
      '{"events":[{"action":"push"}]}',
      '{"a":1,"a":2}',
      '['.repeat(10_000),
    ]) {
      const res = await post(body);
      expect(res.status, body.slice(0, 20)).toBe(400);
      expect(((await res.json()) as { code: string }).code).toBe('WEBHOOK_MALFORMED');
    }
  });

  it('refuses oversized bodies with 413 without reading them whole', async () => {
    // Act
    const res = await post(new Uint8Array(2 * 1024 * 1024).fill(0x20));
    // Assess
    expect(res.status).toBe(413);
    expect(((await res.json()) as { code: string }).code).toBe('WEBHOOK_TOO_LARGE');
  });

  it('acknowledges but never follows another registry host or a repository outside the allow-list', async () => {
    // Prepare
    const before = await metric(/wasm_mirror_webhooks_total\{[^}]*outcome="accepted"[^}]*\} (\d+)/);
    // Act / Assess
    for (const event of [
      { repository: 'plugins/flood', tag: '1.0', digest, host: '169.254.169.254' },
      { repository: 'plugins/flood', tag: '1.0', digest, host: 'evil.example.com:5000' },
      { repository: 'secret/flood', tag: '1.0', digest, host: registry.host },
      { repository: 'plugins/flood', tag: '../../x', digest, host: registry.host },
      { repository: 'plugins/flood', tag: '1.0', digest: 'sha256:xyz', host: registry.host },
    ]) {
      const res = await post(distributionEnvelope([event]));
      expect(res.status, JSON.stringify(event)).toBe(200);
      const body = (await res.json()) as { accepted: number; ignored: { reason: string }[] };
      expect(body.accepted).toBe(0);
      expect(body.ignored.length).toBe(1);
    }
    const blobPush = distributionEnvelope([
      { repository: 'plugins/flood', digest, host: registry.host, mediaType: 'application/octet-stream' },
    ]);
    const res = await post(blobPush);
    expect(res.status).toBe(200);
    expect(((await res.json()) as { accepted: number }).accepted).toBe(0);
    const pull = distributionEnvelope([
      { repository: 'plugins/flood', tag: '1.0', digest, host: registry.host, action: 'pull' },
    ]);
    expect(((await (await post(pull)).json()) as { accepted: number }).accepted).toBe(0);
    expect(await metric(/wasm_mirror_webhooks_total\{[^}]*outcome="accepted"[^}]*\} (\d+)/)).toBe(before);
  });

  it('does the work once for a flood of duplicate deliveries', async () => {
    // Prepare
    const sameId = distributionEnvelope([
      { id: 'the-same-event', repository: 'plugins/flood', tag: '1.0', digest, host: registry.host },
    ]);
    // Act / Assess
    const statuses = await Promise.all(Array.from({ length: 100 }, () => post(sameId).then((r) => r.status)));
    expect(statuses.filter((s) => s === 202).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 202 || s === 200)).toBe(true);
    // Distinct event ids for the same repository+digest: queued once, or skipped as already listed.
    await Promise.all(Array.from({ length: 100 }, () => post(valid())));
    const manifest = await waitForManifest(mirror.url, (p) => p.modules.some((m) => m.ociDigest === digest));
    expect(manifest.payload.modules.filter((m) => m.sha256 === sha256Of(bytes))).toHaveLength(1);
    // Every queued duplicate has been handled (not merely waited for) before counting the work done.
    await queuesSettled();
    expect(await metric(/wasm_mirror_mirror_results_total\{[^}]*reason="mirrored"[^}]*\} (\d+)/)).toBe(1);
    const later = await waitForManifest(mirror.url, () => true);
    expect(later.payload.version).toBe(manifest.payload.version);
  });

  it('never moves a tag back for a replayed or late delivery', async () => {
    // Prepare
    const a = proxyWasmModule({ marker: 'replay a' });
    const b = proxyWasmModule({ marker: 'replay b' });
    const { digest: digestA } = await pushWasm(registry.host, 'plugins/replay:1.0', a, 'wasm-artifact');
    const old = distributionEnvelope([
      { repository: 'plugins/replay', tag: '1.0', digest: digestA, host: registry.host },
    ]);
    expect((await post(old)).status).toBe(202);
    await waitForManifest(mirror.url, (p) => p.modules.some((m) => m.ociDigest === digestA));
    const { digest: digestB } = await pushWasm(registry.host, 'plugins/replay:1.0', b, 'wasm-artifact');
    const fresh = distributionEnvelope([
      { repository: 'plugins/replay', tag: '1.0', digest: digestB, host: registry.host },
    ]);
    expect((await post(fresh)).status).toBe(202);
    const moved = await waitForManifest(mirror.url, (p) => p.modules.some((m) => m.ociDigest === digestB));
    // Act
    // The old delivery again, under a new event id: accepted, checked against the registry, dropped.
    const replay = distributionEnvelope([
      { repository: 'plugins/replay', tag: '1.0', digest: digestA, host: registry.host },
    ]);
    expect((await post(replay)).status).toBe(202);
    const deadline = Date.now() + 10_000;
    while ((await metric(/wasm_mirror_mirror_results_total\{[^}]*reason="stale"[^}]*\} (\d+)/)) < 1) {
      if (Date.now() > deadline) throw new Error('the replay was never processed');
      await new Promise((r) => setTimeout(r, 50));
    }
    // Assess
    const after = await waitForManifest(mirror.url, () => true);
    expect(after.payload.version).toBe(moved.payload.version);
    expect(after.payload.modules.find((m) => m.name.endsWith('/plugins/replay'))?.ociDigest).toBe(digestB);
  });
});
