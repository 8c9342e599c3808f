/**
 * Failure paths that must not lose good work, through the Lambda handlers on fauxqs: a registry
 * that trickles its bytes is cut off before the function's timeout and only its own record is
 * retried, records not started for lack of time go back to the queue, a reconcile that runs out
 * of time is handed back with what it queued kept, and in the FIFO publish queue one request that
 * cannot be published holds back only the requests after it.
 */
import { createHash } from 'node:crypto';
import { KMSClient } from '@aws-sdk/client-kms';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createMirrorQueueHandler, MIRROR_RESERVE_MS } from '../../functions/handlers/mirror.ts';
import { createPublishQueueHandler } from '../../functions/handlers/publish.ts';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';
import type { ModuleRecord } from '../../shared/core/domain.ts';
import { loadTrustedKeys, verifyIndex, verifyManifest } from '../../shared/core/manifest/index.ts';
import { storageKeys } from '../../shared/core/storage-keys.ts';
import { type FakeRegistry, MEDIA, proxyWasmModule, startFakeRegistry } from '../support/index.ts';
import { type AwsHarness, startAwsHarness } from './support/aws-harness.ts';
import { TEST_CREDENTIALS, TEST_REGION } from './support/fauxqs.ts';
import { lambdaContext, pumpOnce } from './support/sqs-driver.ts';

/** Registry time the tests give an invocation: its remaining time is the reserve plus this. */
const REGISTRY_BUDGET_MS = 2_000;
/** Lets a record start with the little time these invocations have. */
const MIN_START_MS = 1_000;

describe('failure paths that keep good work', () => {
  let h: AwsHarness;
  let fake: FakeRegistry;
  let config: MirrorConfig;
  /** Blob and tag-list requests answered one byte at a time while set, with the bytes they send. */
  const trickling = new Map<string, Uint8Array>();
  const timers = new Set<ReturnType<typeof setInterval>>();

  beforeAll(async () => {
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    h = await startAwsHarness({ HOOK_TOKEN: 'failure-paths-token-0123456789' });
    fake = await startFakeRegistry();
    // A registry that answers at once and then sends one byte every half second: no idle
    // timeout fires, and the transport's own whole-request limit is ten minutes.
    fake.script((req, res) => {
      const path = new URL(req.url ?? '/', 'http://x').pathname;
      const bytes = trickling.get(path);
      if (req.method !== 'GET' || bytes === undefined) return undefined;
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(bytes.length),
      });
      let sent = 0;
      const timer = setInterval(() => {
        if (sent < bytes.length) res.write(bytes.subarray(sent, ++sent));
      }, 500);
      timers.add(timer);
      res.on('close', () => {
        clearInterval(timer);
        timers.delete(timer);
      });
      return true;
    });
    config = parseConfig(`
mirror: { name: failure-mesh, manifestTtl: 48h, publishInterval: 0s }
sources:
  - id: local
    type: distribution
    registry: "${fake.host}"
    insecure: true
    repositories: ["plugins/**"]
    webhookSecretEnv: HOOK_TOKEN
  - id: rec
    type: dockerhub
    registry: "${fake.host}"
    insecure: true
    repositories: ["plugins/listed", "plugins/stalled"]
    webhookSecretEnv: HOOK_TOKEN
    reconcileInterval: 10m
`);
  });

  afterAll(async () => {
    for (const t of timers) clearInterval(t);
    await fake?.stop();
    await h?.stop();
    vi.unstubAllEnvs();
  });

  const putArtifact = (repository: string, tag: string, bytes: Uint8Array) => {
    const image = fake.putImage(repository, tag, {
      config: { mediaType: MEDIA.wasmArtifactConfig, bytes: new TextEncoder().encode('{}') },
      layers: [{ mediaType: MEDIA.wasmArtifactLayer, bytes }],
    });
    const layer = (JSON.parse(new TextDecoder().decode(image.manifest)) as { layers: { digest: string }[] })
      .layers[0]!.digest;
    return { digest: image.digest, layer, bytes };
  };

  const receiveAll = async (queue: { url: string }) => {
    const out = await h.emu.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    return (out.Messages ?? []).map((m) => JSON.parse(m.Body!) as Record<string, unknown>);
  };

  it('mirror: a trickling registry fails its own record at the deadline; records not started go back to the queue', async () => {
    // Prepare
    const slow = putArtifact('plugins/slow', '1.0', proxyWasmModule({ marker: 'slow' }));
    const fast = putArtifact('plugins/fast', '1.0', proxyWasmModule({ marker: 'fast' }));
    trickling.set(`/v2/plugins/slow/blobs/${slow.layer}`, slow.bytes);
    const runtime = await h.runtime('mirror', config);
    const published: { record: ModuleRecord }[] = [];
    runtime.deps.publishQueue = { send: async (body) => void published.push(body as never) };
    const handler = createMirrorQueueHandler(runtime, { minStartMs: MIN_START_MS });
    const job = (repository: string, digest: string) => ({
      sourceId: 'local',
      registry: fake.host,
      repository,
      tag: '1.0',
      digest,
      receivedAt: new Date().toISOString(),
    });
    await runtime.deps.mirrorQueue.send(job('plugins/slow', slow.digest));
    await runtime.deps.mirrorQueue.send(job('plugins/fast', fast.digest));
    const repositoryOf = (r: SQSRecord) => (JSON.parse(r.body) as { repository: string }).repository;
    const slowFirst = (records: SQSRecord[]) =>
      [...records].sort((a, b) =>
        repositoryOf(a) === 'plugins/slow' ? -1 : repositoryOf(b) === 'plugins/slow' ? 1 : 0,
      );
    // Act
    const started = Date.now();
    const round = await pumpOnce(h.emu.sqs, h.mirrorQueue, handler, {
      context: lambdaContext('mirror', MIRROR_RESERVE_MS + REGISTRY_BUDGET_MS),
      arrange: slowFirst,
      redeliverNow: true,
    });
    const took = Date.now() - started;
    // Assess: answered well inside the function's time, not cut off by Lambda with both records lost to it.
    expect(took).toBeGreaterThanOrEqual(REGISTRY_BUDGET_MS - 100);
    expect(took).toBeLessThan(MIRROR_RESERVE_MS / 2);
    expect(round).toMatchObject({ received: 2, deleted: 0 });
    expect(round.failed).toHaveLength(2);
    // The second record was never started: the registry never saw a request for it.
    expect(fake.requests.filter((r) => r.path.includes('plugins/fast'))).toEqual([]);
    expect(published).toEqual([]);

    // Act: both are back on the queue, and go through once the registry answers in time.
    trickling.clear();
    const again = await pumpOnce(h.emu.sqs, h.mirrorQueue, handler, { arrange: slowFirst });
    // Assess
    expect(again).toMatchObject({ received: 2, deleted: 2, failed: [] });
    expect(published.map((p) => p.record.name).sort()).toEqual([
      `${fake.host}/plugins/fast`,
      `${fake.host}/plugins/slow`,
    ]);
  });

  it('mirror: a reconcile cut short by the deadline is handed back, and what it queued stays queued', async () => {
    // Prepare
    const listed = putArtifact('plugins/listed', '2.0', proxyWasmModule({ marker: 'listed' }));
    trickling.set(
      '/v2/plugins/stalled/tags/list',
      new TextEncoder().encode(`{"tags":[${' '.repeat(1000)}]}`),
    );
    const runtime = await h.runtime('mirror', config);
    const handler = createMirrorQueueHandler(runtime, { minStartMs: MIN_START_MS });
    await runtime.deps.mirrorQueue.send({ kind: 'reconcile', sourceId: 'rec' } as never);
    // Act
    const started = Date.now();
    const round = await pumpOnce(h.emu.sqs, h.mirrorQueue, handler, {
      context: lambdaContext('mirror', MIRROR_RESERVE_MS + REGISTRY_BUDGET_MS),
      redeliverNow: true,
    });
    // Assess
    expect(Date.now() - started).toBeLessThan(MIRROR_RESERVE_MS / 2);
    expect(round).toMatchObject({ received: 1, deleted: 0 });
    expect(round.failed).toHaveLength(1);

    const queued = await receiveAll(h.mirrorQueue);
    expect(queued).toEqual(
      expect.arrayContaining([
        { kind: 'reconcile', sourceId: 'rec' },
        expect.objectContaining({ repository: 'plugins/listed', tag: '2.0', digest: listed.digest }),
      ]),
    );
    trickling.clear();
  });

  describe('publish', () => {
    const record = (name: string, tag: string, marker: string): ModuleRecord => {
      const hex = createHash('sha256').update(marker).digest('hex');
      return {
        name,
        tag,
        ociDigest: `sha256:${createHash('sha256').update(`manifest ${marker}`).digest('hex')}`,
        sha256: hex,
        size: 1024,
        format: 'wasm-artifact',
        kind: 'module',
        mirroredAt: new Date().toISOString(),
        observedAt: new Date().toISOString(),
      };
    };
    const fifoEvent = (bodies: unknown[]): SQSEvent => ({
      Records: bodies.map((body, i) => ({
        messageId: `p${i}-${Math.random().toString(36).slice(2)}`,
        receiptHandle: `r${i}`,
        body: JSON.stringify(body),
        attributes: {
          ApproximateReceiveCount: '1',
          SentTimestamp: String(Date.now()),
          SenderId: 'AIDAEXAMPLE',
          ApproximateFirstReceiveTimestamp: String(Date.now()),
          MessageGroupId: 'publish',
          MessageDeduplicationId: `d${i}`,
          SequenceNumber: String(i + 1),
        },
        messageAttributes: {},
        md5OfBody: '',
        eventSource: 'aws:sqs',
        eventSourceARN: h.publishQueue.arn,
        awsRegion: TEST_REGION,
      })),
    });
    const get = async (key: string) =>
      (await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: key }))).Body!.transformToByteArray();
    /** name:tag of every entry agents are served, read through the v2 index and checked against v1. */
    const listed = async (): Promise<string[]> => {
      const trustedKeys = loadTrustedKeys(h.kms.publicKey.export({ type: 'spki', format: 'pem' }) as string);
      const opts = { trustedKeys, mirrorName: 'failure-mesh', now: new Date() };
      const v1 = verifyManifest(await get(storageKeys.latestManifest), opts).payload;
      const index = verifyIndex(await get('manifests/v2/index.json'), opts).payload;
      expect(index.version).toBe(v1.version);
      expect(index.entries).toBe(v1.modules.length);
      return v1.modules.map((m) => `${m.name.replace(/^.*\//, '')}:${m.tag}`);
    };

    it('one request that cannot be published fails with those after it; those before it are published', async () => {
      // Prepare
      const a = record('r.example/acme/a', '1.0', 'a');
      const b = record('r.example/acme/b', '1.0', 'b');
      const c = record('r.example/acme/c', '1.0', 'c');
      // S3 fails every read of b's tag observation: b parses, but no publish that holds it can succeed.
      const failingKey = storageKeys.tagObservation(b.name, b.tag);
      const s3 = new S3Client({
        region: TEST_REGION,
        credentials: TEST_CREDENTIALS,
        endpoint: h.s3Endpoint,
        forcePathStyle: true,
        maxAttempts: 1,
      });
      s3.middlewareStack.add(
        (next) => async (args) => {
          if ((args.input as { Key?: string }).Key === failingKey) {
            throw Object.assign(new Error('We encountered an internal error.'), {
              name: 'InternalError',
              $fault: 'server',
              $metadata: { httpStatusCode: 500 },
            });
          }
          return next(args);
        },
        { step: 'initialize', name: 'failOneKey' },
      );
      const handler = createPublishQueueHandler(await h.runtime('publish', config, { s3 }));
      const event = fifoEvent([
        { kind: 'record', record: a },
        { kind: 'record', record: b },
        { kind: 'resign', reason: 'manual' },
        { kind: 'record', record: c },
      ]);
      // Act
      const result = await handler(event, lambdaContext('publish'));
      // Assess
      expect(result.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(
        event.Records.slice(1).map((r) => r.messageId),
      );
      expect(await listed()).toEqual(['a:1.0']);
      s3.destroy();
    });

    it('a signer that fails once costs a retry of the batch one request at a time, not the batch', async () => {
      // Prepare
      const kms = new KMSClient({
        region: TEST_REGION,
        credentials: TEST_CREDENTIALS,
        endpoint: h.kms.endpoint,
        maxAttempts: 1,
      });
      let signs = 0;
      kms.middlewareStack.add(
        (next, context) => async (args) => {
          if (context.commandName === 'SignCommand' && signs++ === 0) {
            throw Object.assign(new Error('KMS is unavailable'), {
              name: 'KMSInternalException',
              $fault: 'server',
              $metadata: { httpStatusCode: 500 },
            });
          }
          return next(args);
        },
        { step: 'initialize', name: 'failOnce' },
      );
      const handler = createPublishQueueHandler(await h.runtime('publish', config, { kms }));
      // Act
      const result = await handler(
        fifoEvent([
          { kind: 'record', record: record('r.example/acme/d', '1.0', 'd') },
          { kind: 'record', record: record('r.example/acme/e', '1.0', 'e') },
        ]),
        lambdaContext('publish'),
      );
      // Assess
      expect(signs).toBeGreaterThan(1);
      expect(result.batchItemFailures).toEqual([]);
      expect(await listed()).toEqual(['a:1.0', 'd:1.0', 'e:1.0']);
      kms.destroy();
    });
  });
});
