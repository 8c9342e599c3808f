/**
 * Receiving: nothing a sender delivers is lost when storage or the queue hiccups, and the
 * answer tells the sender to retry.
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
import type { ObjectStore } from '../../shared/core/ports.ts';
import { noMetrics, silentLogger, systemClock } from '../../shared/core/ports.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope } from '../support/mirror.ts';

const config = parseConfig(`
sources:
  - { id: local, type: distribution, registry: "reg.example:5000", repositories: ["plugins/**"], webhookSecretEnv: HOOK }
`);
const DIGEST = `sha256:${'a'.repeat(64)}`;

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
    const receive = createWebhookReceiver(deps);
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
    arrange();
    const receive = createWebhookReceiver(deps);
    expect(await receive(delivery())).toMatchObject({ status: 503 });
    expect(queued).toHaveLength(0);
    expect((await receive(delivery())).status).toBe(202);
    expect(queued).toHaveLength(1);
  });

  it('answers 503 while the source has no secret configured, 404 for an unknown source', async () => {
    const receive = createWebhookReceiver({ ...deps, secrets: { get: async () => undefined } });
    expect(await receive(delivery())).toMatchObject({ status: 503, body: { code: 'CONFIG_INVALID' } });
    expect(await receive({ ...delivery(), sourceId: 'nope' })).toMatchObject({ status: 404 });
    expect(queued).toHaveLength(0);
  });
});
