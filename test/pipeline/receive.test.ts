/**
 * Receiving: nothing a sender delivers is lost when storage or the queue hiccups, and the
 * answer tells the sender to retry; one sender cannot queue more than its share of jobs; a
 * stranger is refused on the head of a delivery alone.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { parseConfig } from '../../shared/core/config.ts';
import type { MirrorJob } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { createWebhookReceiver, type ReceiverDeps } from '../../shared/core/pipeline/receive.ts';
import type { Clock, ObjectStore } from '../../shared/core/ports.ts';
import { noMetrics, silentLogger, systemClock } from '../../shared/core/ports.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope } from '../support/mirror.ts';

const config = parseConfig(`
sources:
  - { id: local, type: distribution, registry: "reg.example:5000", repositories: ["plugins/**"], webhookSecretEnv: HOOK }
  - { id: gh, type: github, registry: "ghcr.io", repositories: ["acme/**"], webhookSecretEnv: HOOK }
  - { id: hub, type: dockerhub, registry: "registry-1.docker.io", repositories: ["acme/**"], webhookSecretEnv: HOOK }
`);
const DIGEST = `sha256:${'a'.repeat(64)}`;

/** A compact envelope of `count` manifest pushes, each to its own tag (a flood fits in the 1 MiB cap). */
function manyPushes(count: number, batch: string): Uint8Array {
  const events = Array.from({ length: count }, (_, i) => ({
    id: `${batch}-${i}`,
    action: 'push',
    target: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      repository: 'plugins/a',
      tag: `t${i}`,
      digest: DIGEST,
    },
    request: { host: 'reg.example:5000' },
  }));
  return Buffer.from(JSON.stringify({ events }));
}

function manualClock(): Clock & { advance(ms: number): void } {
  let t = Date.parse('2026-01-10T12:00:00Z');
  return {
    now: () => new Date(t),
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('webhook receiver', () => {
  let dir: string;
  let store: ObjectStore;
  let queued: MirrorJob[];
  let failHead: number;
  let failSend: number;
  let deps: ReceiverDeps;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-receive-'));
    const real = await FsObjectStore.open({ root: dir });
    failHead = 0;
    failSend = 0;
    queued = [];
    store = Object.assign(Object.create(real) as ObjectStore, {
      head: async (key: string) => {
        if (failHead-- > 0) throw new WasmMirrorError('STORAGE_FAILURE', 'EIO', { retryable: true });
        return real.head(key);
      },
    });
    deps = {
      config,
      store,
      mirrorQueue: {
        send: async (job) => {
          if (failSend-- > 0) throw new WasmMirrorError('QUEUE_FAILURE', 'throttled', { retryable: true });
          queued.push(job);
        },
      },
      secrets: { get: async () => 'hook-secret' },
      clock: systemClock,
      logger: silentLogger,
      metrics: noMetrics,
    };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const delivery = () => ({
    sourceId: 'local',
    headers: { Authorization: 'Bearer hook-secret', 'Content-Type': DISTRIBUTION_EVENTS_V1 },
    body: Buffer.from(
      distributionEnvelope([
        { id: 'evt-1', repository: 'plugins/a', tag: '1.0', digest: DIGEST, host: 'reg.example:5000' },
      ]),
    ),
  });

  it('queues a job, then acknowledges the replay without queueing again', async () => {
    // Prepare
    const receive = createWebhookReceiver(deps);
    // Act / Assess
    expect((await receive(delivery())).status).toBe(202);
    expect(await receive(delivery())).toMatchObject({ status: 200, body: { duplicate: true } });
    // A fresh receiver (restart, another instance) still sees the durable marker.
    expect(await createWebhookReceiver(deps)(delivery())).toMatchObject({
      status: 200,
      body: { duplicate: true },
    });
    expect(queued).toHaveLength(1);
    expect(queued[0]).toMatchObject({
      sourceId: 'local',
      registry: 'reg.example:5000',
      repository: 'plugins/a',
      digest: DIGEST,
    });
  });

  it.each([
    ['storage', () => (failHead = 1)],
    ['the queue', () => (failSend = 1)],
  ])("answers 503 when %s fails, and takes the sender's retry", async (_what, arrange) => {
    // Prepare
    arrange();
    const receive = createWebhookReceiver(deps);
    // Act / Assess
    expect(await receive(delivery())).toMatchObject({ status: 503 });
    expect(queued).toHaveLength(0);
    expect((await receive(delivery())).status).toBe(202);
    expect(queued).toHaveLength(1);
  });

  it('answers 503 while the source has no secret configured, 404 for an unknown source', async () => {
    // Prepare
    const receive = createWebhookReceiver({ ...deps, secrets: { get: async () => undefined } });
    // Act / Assess
    expect(await receive(delivery())).toMatchObject({ status: 503, body: { code: 'CONFIG_INVALID' } });
    expect(await receive({ ...delivery(), sourceId: 'nope' })).toMatchObject({ status: 404 });
    expect(queued).toHaveLength(0);
  });

  const bulk = (count: number, batch: string) => ({
    sourceId: 'local',
    headers: { authorization: 'Bearer hook-secret', 'content-type': DISTRIBUTION_EVENTS_V1 },
    body: manyPushes(count, batch),
  });

  it('queues at most 100 jobs of one delivery and says how many it dropped', async () => {
    // Prepare
    const receive = createWebhookReceiver(deps);
    // Act
    const res = await receive(bulk(3000, 'big'));
    // Assess
    expect(res).toMatchObject({
      status: 202,
      body: { code: 'WEBHOOK_EVENTS_CAPPED', accepted: 100, dropped: 2900 },
    });
    expect(res.body.message).toMatch(/100 accepted, 2900 dropped/);
    expect(queued).toHaveLength(100);
    // Act / Assess: small deliveries answer as before, with no code and nothing dropped.
    const small = await receive(bulk(3, 'small'));
    expect(small).toEqual({ status: 202, body: { accepted: 3, ignored: [] } });
  });

  it('rate-limits jobs per source: a delivery over the budget is refused whole, and its retry taken', async () => {
    // Prepare
    const clock = manualClock();
    const limited = {
      ...config,
      sources: config.sources.map((s) => (s.id === 'local' ? { ...s, rateLimitPerMinute: 250 } : s)),
    };
    const receive = createWebhookReceiver({ ...deps, config: limited, clock });
    // Act: the flood that once queued 60,000 jobs, 20 deliveries of 3,000 events.
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) statuses.push((await receive(bulk(3000, `flood-${i}`))).status);
    // Assess
    expect(statuses.slice(0, 2)).toEqual([202, 202]);
    expect(statuses.slice(2).every((s) => s === 429)).toBe(true);
    expect(queued).toHaveLength(200);

    // Act / Assess: a genuine delivery over the budget is refused whole.
    const refused = await receive(bulk(100, 'genuine'));
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ code: 'WEBHOOK_RATE_LIMITED', accepted: 0 });
    expect(refused.body.message).toMatch(/nothing was queued/);
    // 50 tokens left; 50 more arrive in 12 s at 250 per minute.
    expect(refused.headers?.['retry-after']).toBe('12');
    expect(queued).toHaveLength(200);

    // Act / Assess: its retry, once the budget allows it.
    clock.advance(12_000);
    // The very same delivery again: not taken for a replay, queued whole.
    expect(await receive(bulk(100, 'genuine'))).toMatchObject({ status: 202, body: { accepted: 100 } });
    expect(queued).toHaveLength(300);
  });

  it('gives back the job budget of a delivery the queue could not take', async () => {
    // Prepare
    const clock = manualClock();
    const limited = {
      ...config,
      sources: config.sources.map((s) => (s.id === 'local' ? { ...s, rateLimitPerMinute: 100 } : s)),
    };
    const receive = createWebhookReceiver({ ...deps, config: limited, clock });
    failSend = 1;
    // Act / Assess
    expect((await receive(bulk(100, 'retried'))).status).toBe(503);
    expect((await receive(bulk(100, 'retried'))).status).toBe(202);
    expect(queued).toHaveLength(100);
  });

  it('refuses a stranger on the head of a delivery, before any body is read', async () => {
    // Prepare
    const receive = createWebhookReceiver(deps);
    const head = (sourceId: string, headers: Record<string, string>, pathToken?: string) =>
      receive.admit({ sourceId, headers, ...(pathToken === undefined ? {} : { pathToken }) });
    // Act / Assess
    expect(await head('local', { Authorization: 'Bearer hook-secret' })).toEqual({
      admitted: true,
      maxBodyBytes: 1024 * 1024,
    });
    expect(await head('local', { Authorization: 'Bearer wrong' })).toMatchObject({
      admitted: false,
      response: { status: 401, body: { code: 'WEBHOOK_UNAUTHENTICATED', message: 'authentication failed' } },
    });
    expect(await head('local', {})).toMatchObject({ admitted: false, response: { status: 401 } });
    expect(await head('hub', {}, 'hook-secret')).toMatchObject({ admitted: true });
    expect(await head('hub', {}, 'wrong')).toMatchObject({ admitted: false, response: { status: 401 } });
    // A body HMAC can only be checked with the body; a missing or malformed signature cannot pass.
    const signature = `sha256=${'0'.repeat(64)}`;
    expect(await head('gh', { 'X-Hub-Signature-256': signature })).toMatchObject({ admitted: true });
    expect(await head('gh', {})).toMatchObject({ admitted: false, response: { status: 401 } });
    expect(await head('gh', { 'x-hub-signature-256': 'sha1=abc' })).toMatchObject({
      admitted: false,
      response: { status: 401 },
    });
    expect(await head('nope', {})).toMatchObject({ admitted: false, response: { status: 404 } });
    const noSecret = createWebhookReceiver({ ...deps, secrets: { get: async () => undefined } });
    expect(await noSecret.admit({ sourceId: 'local', headers: {} })).toMatchObject({
      admitted: false,
      response: { status: 503, body: { code: 'CONFIG_INVALID' } },
    });
    expect(queued).toHaveLength(0);
  });
});
