/**
 * The Lambda entry points with real event shapes, on fauxqs and the KMS / Secrets Manager
 * stand-ins: API Gateway v2 for webhooks, SQS batches (through the event source mapping driver)
 * for mirror and publish, and a CloudFormation custom resource event for keys.json.
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { APIGatewayProxyEventV2, CloudFormationCustomResourceCreateEvent, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { loadFunctionEnv } from '../../functions/config.ts';
import { createKeysResourceHandler, createLazyKeysResourceHandler } from '../../functions/handlers/keys.ts';
import { createMirrorQueueHandler } from '../../functions/handlers/mirror.ts';
import { createPublishQueueHandler } from '../../functions/handlers/publish.ts';
import { parseMirrorMessage, parsePublishRequest } from '../../functions/handlers/records.ts';
import { createWebhookHandler } from '../../functions/handlers/webhook.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { loadTrustedKeys, verifyManifest } from '../../shared/core/manifest/index.ts';
import type { PulledModule, WasmPuller } from '../../shared/core/ports.ts';
import { distributionEnvelope } from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';
import { type AwsHarness, startAwsHarness } from './support/aws-harness.ts';
import { drain, lambdaContext } from './support/sqs-driver.ts';

const TOKEN = 'handler-test-token-0123456789';
const config = parseConfig(`
mirror: { name: handlers-mesh, manifestTtl: 48h }
sources:
  - id: local
    type: distribution
    registry: 127.0.0.1:5999
    insecure: true
    repositories: ["plugins/**"]
    webhookSecretEnv: HOOK_TOKEN
  - id: ecr
    type: ecr
    registry: 111122223333.dkr.ecr.eu-west-1.amazonaws.com
    repositories: ["wasm/**"]
`);
const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/**
 * A puller that "pulls" fixed bytes; the repository `plugins/flaky` fails like an outage. A tag
 * resolves to the sha256 of its name, so jobs name that digest (the mirror asks the registry what
 * the tag points at and treats a differing delivery digest as stale).
 */
function fakePuller(bytes: Uint8Array): WasmPuller {
  return {
    async pullToFile(target, dest): Promise<PulledModule> {
      if (target.repository === 'plugins/flaky') {
        throw new WasmMirrorError('REGISTRY_UNAVAILABLE', 'registry answered 503', { retryable: true });
      }
      await writeFile(dest, bytes);
      return {
        ociDigest: target.reference.startsWith('sha256:') ? target.reference : digestOf(target.reference),
        sha256: createHash('sha256').update(bytes).digest('hex'),
        size: bytes.byteLength,
        format: 'wasm-artifact',
        kind: 'module',
        abi: 'proxy_abi_version_0_2_1',
      };
    },
    resolveDigest: async (t) => digestOf(t.reference),
    listTags: async () => [],
  };
}

function httpEvent(
  path: string,
  body: string,
  headers: Record<string, string>,
  base64 = false,
): APIGatewayProxyEventV2 {
  const [, , sourceId, token] = path.split('/');
  return {
    version: '2.0',
    routeKey: token ? 'POST /hooks/{sourceId}/{token}' : 'POST /hooks/{sourceId}',
    rawPath: path,
    rawQueryString: '',
    headers,
    body: base64 ? Buffer.from(body).toString('base64') : body,
    isBase64Encoded: base64,
    pathParameters: { sourceId: sourceId!, ...(token ? { token } : {}) },
    requestContext: {
      accountId: '000000000000',
      apiId: 'api',
      domainName: 'api.example',
      domainPrefix: 'api',
      http: { method: 'POST', path, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
      requestId: 'r',
      routeKey: 'POST /hooks/{sourceId}',
      stage: '$default',
      time: '',
      timeEpoch: Date.now(),
    },
  };
}

describe('Lambda handlers on emulators', () => {
  let h: AwsHarness;
  const moduleBytes = proxyWasmModule({ marker: 'handlers' });

  beforeAll(async () => {
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    h = await startAwsHarness({ HOOK_TOKEN: TOKEN });
  });
  afterAll(async () => {
    await h?.stop();
    vi.unstubAllEnvs();
  });

  it('webhook: authenticates, queues a job and answers 202; secrets are read once and cached', async () => {
    // Prepare
    const handler = createWebhookHandler(await h.runtime('webhook', config));
    const body = distributionEnvelope([
      { repository: 'plugins/auth', tag: '1.0', digest: digestOf('auth'), host: '127.0.0.1:5999' },
    ]);
    // Act / Assess
    const ok = await handler(
      httpEvent(
        '/hooks/local',
        body,
        {
          authorization: `Bearer ${TOKEN}`,
          'content-type': 'application/vnd.docker.distribution.events.v1+json',
        },
        true,
      ),
      lambdaContext('webhook'),
    );
    expect(ok.statusCode).toBe(202);
    expect(JSON.parse(ok.body!)).toMatchObject({ accepted: 1 });

    const bad = await handler(
      httpEvent('/hooks/local', body, { authorization: 'Bearer wrong', 'content-type': 'application/json' }),
      lambdaContext('webhook'),
    );
    expect(bad.statusCode).toBe(401);
    const unknown = await handler(httpEvent('/hooks/nope', body, {}), lambdaContext('webhook'));
    expect(unknown.statusCode).toBe(404);
    const badBase64 = await handler(
      {
        ...httpEvent('/hooks/local', body, { authorization: `Bearer ${TOKEN}` }),
        body: '%%%',
        isBase64Encoded: true,
      },
      lambdaContext('webhook'),
    );
    expect(badBase64.statusCode).toBe(400);
    expect(h.secrets.reads.get('wasm-mirror/test/HOOK_TOKEN')).toBe(1);

    const jobs: unknown[] = [];
    await drain(h.emu.sqs, h.mirrorQueue, async (event: SQSEvent) => {
      for (const r of event.Records) jobs.push(JSON.parse(r.body));
    });
    expect(jobs).toEqual([
      expect.objectContaining({
        sourceId: 'local',
        registry: '127.0.0.1:5999',
        repository: 'plugins/auth',
        tag: '1.0',
      }),
    ]);
  });

  it('mirror: stores modules, reports only retryable failures and malformed bodies, ignores unknown ECR registries', async () => {
    // Prepare
    const handler = createMirrorQueueHandler(
      await h.runtime('mirror', config, { puller: fakePuller(moduleBytes) }),
    );
    const receivedAt = new Date().toISOString();
    const producer = (await h.runtime('webhook', config)).deps.mirrorQueue;
    await producer.send({
      sourceId: 'local',
      registry: '127.0.0.1:5999',
      repository: 'plugins/auth',
      tag: '1.0',
      digest: digestOf('1.0'),
      receivedAt,
    });
    await producer.send({
      sourceId: 'local',
      registry: '127.0.0.1:5999',
      repository: 'plugins/flaky',
      tag: '1.0',
      digest: digestOf('1.0'),
      receivedAt,
    });
    // Not allowed by the source's repository globs: a permanent failure, acknowledged.
    await producer.send({
      sourceId: 'local',
      registry: '127.0.0.1:5999',
      repository: 'other/x',
      tag: '1',
      digest: digestOf('1'),
      receivedAt,
    });
    await producer.send(ecrEvent('999999999999', 'wasm/filter', '2.0') as never);
    await producer.send({ not: 'a job' } as never);
    // Act
    const rounds = await drain(h.emu.sqs, h.mirrorQueue, handler, { redeliverNow: true, maxRounds: 10 });
    // Assess
    expect(rounds[0]).toMatchObject({ received: 5, deleted: 3 });
    // The flaky job and the malformed body were retried until the redrive policy moved them.
    const dead: unknown[] = [];
    await drain(h.emu.sqs, h.mirrorDlq, async (event: SQSEvent) => {
      for (const r of event.Records) dead.push(JSON.parse(r.body));
    });
    expect(dead).toEqual(
      expect.arrayContaining([expect.objectContaining({ repository: 'plugins/flaky' }), { not: 'a job' }]),
    );
    expect(dead).toHaveLength(2);

    const sha = createHash('sha256').update(moduleBytes).digest('hex');
    const stored = await h.s3.send(
      new GetObjectCommand({ Bucket: h.bucket, Key: `modules/sha256/${sha}.wasm` }),
    );
    expect(Buffer.from(await stored.Body!.transformToByteArray()).equals(Buffer.from(moduleBytes))).toBe(
      true,
    );
  });

  it('publish: folds the FIFO batch into one signed manifest that the agent verifies', async () => {
    // Prepare
    const publishRuntime = await h.runtime('publish', config);
    const counted: string[] = [];
    publishRuntime.deps.metrics = { count: (name) => void counted.push(name), gauge() {} };
    const handler = createPublishQueueHandler(publishRuntime);
    // Act / Assess
    const rounds = await drain(h.emu.sqs, h.publishQueue, handler);
    expect(rounds.reduce((n, r) => n + r.deleted, 0)).toBeGreaterThanOrEqual(1);
    const latest = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: 'manifests/latest.json' }));
    const bytes = await latest.Body!.transformToByteArray();
    const trusted = loadTrustedKeys(h.kms.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const verified = verifyManifest(bytes, {
      trustedKeys: trusted,
      mirrorName: 'handlers-mesh',
      now: new Date(),
    });
    expect(verified.payload.version).toBe(1);
    expect(verified.payload.modules.map((m) => `${m.name}:${m.tag}`)).toEqual([
      '127.0.0.1:5999/plugins/auth:1.0',
    ]);
    const sign = h.kms.calls.filter((c) => c.target === 'TrentService.Sign');
    expect(sign.at(-1)!.body).toMatchObject({ MessageType: 'DIGEST', SigningAlgorithm: 'ECDSA_SHA_256' });

    // A scheduled re-sign of a fresh manifest changes nothing. A malformed request is logged,
    // counted and acknowledged: failing it would hold the single message group (every later
    // publish) behind a message that can never succeed.
    const producer = (await h.runtime('mirror', config)).deps.publishQueue;
    await producer.send({ kind: 'resign', reason: 'schedule' });
    await producer.send({ kind: 'bogus' } as never, { dedupeId: 'bogus' });
    const again = await drain(h.emu.sqs, h.publishQueue, handler);
    expect(again.reduce((n, r) => n + r.received, 0)).toBe(2);
    expect(again.flatMap((r) => r.failed)).toEqual([]);
    expect(again.reduce((n, r) => n + r.deleted, 0)).toBe(2);
    expect(counted).toContain('publish_requests_malformed');
    const deadPublishes: unknown[] = [];
    await drain(h.emu.sqs, h.publishDlq, async (event: SQSEvent) => {
      for (const r of event.Records) deadPublishes.push(JSON.parse(r.body));
    });
    expect(deadPublishes).toEqual([]);
    const after = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: 'manifests/latest.json' }));
    expect(Buffer.from(await after.Body!.transformToByteArray()).equals(Buffer.from(bytes))).toBe(true);

    // fauxqs hands out one FIFO message per receive, so a multi-record batch is built here, as
    // Lambda delivers it: several requests become one new version.
    // Malformed records in the batch (not JSON; a record the manifest schema refuses) are dropped
    // and the rest still publish.
    const record = verified.payload.modules[0]!;
    counted.length = 0;
    const batch: SQSEvent = {
      Records: [
        { kind: 'record', record: { ...record, tag: '1.1', kind: 'module' } },
        { kind: 'record', record: { ...record, tag: '1.3', sha256: 'not-hex', kind: 'module' } },
        { kind: 'record', record: { ...record, tag: '1.2', kind: 'module' } },
        { kind: 'resign', reason: 'manual' },
      ]
        .map((body, i) => sqsRecord(`m${i}`, JSON.stringify(body), h.publishQueue.arn))
        .concat(sqsRecord('m-broken', '{"kind":"record",', h.publishQueue.arn)),
    };
    const result = await handler(batch, lambdaContext('publish'));
    expect(result.batchItemFailures).toEqual([]);
    expect(counted.filter((n) => n === 'publish_requests_malformed')).toHaveLength(2);
    const v2 = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: 'manifests/latest.json' }));
    const payload = verifyManifest(await v2.Body!.transformToByteArray(), {
      trustedKeys: trusted,
      mirrorName: 'handlers-mesh',
      now: new Date(),
    }).payload;
    expect(payload.version).toBe(2);
    expect(payload.modules.map((m) => m.tag)).toEqual(['1.0', '1.1', '1.2']);
  });

  it('keys custom resource: writes keys.json from the KMS public key and answers CloudFormation', async () => {
    // Prepare
    const responses: unknown[] = [];
    const server: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        responses.push({ method: req.method, body: JSON.parse(Buffer.concat(chunks).toString()) });
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cfn-response?sig=x`;
      const event: CloudFormationCustomResourceCreateEvent = {
        RequestType: 'Create',
        ServiceToken: 'arn:aws:lambda:us-east-1:000000000000:function:keys',
        ResponseURL: url,
        StackId: 'arn:aws:cloudformation:us-east-1:000000000000:stack/s/1',
        RequestId: 'req-1',
        LogicalResourceId: 'KeysJson',
        ResourceType: 'Custom::WasmMirrorKeysJson',
        ResourceProperties: { ServiceToken: 'x', KeyArn: h.kms.keyArn },
      };
      // Act / Assess
      await createKeysResourceHandler(await h.runtime('keys', config))(event, lambdaContext('keys'));
      const spki = h.kms.publicKey.export({ type: 'spki', format: 'der' });
      const keyid = createHash('sha256').update(spki).digest('hex');
      expect(responses).toEqual([
        {
          method: 'PUT',
          body: expect.objectContaining({ Status: 'SUCCESS', RequestId: 'req-1', Data: { KeyId: keyid } }),
        },
      ]);
      const keysJson = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: 'keys.json' }));
      const trusted = loadTrustedKeys(await keysJson.Body!.transformToString());
      expect(trusted.map((k) => k.keyid)).toEqual([keyid]);

      // The deploy leaves a startup re-sign on the publish queue, so the mirror has a manifest
      // without waiting for the schedule.
      const queued: SQSEvent['Records'] = [];
      await drain(h.emu.sqs, h.publishQueue, async (e: SQSEvent) => void queued.push(...e.Records));
      expect(queued.map((r) => JSON.parse(r.body))).toEqual([{ kind: 'resign', reason: 'startup' }]);
      expect(queued[0]!.attributes).toMatchObject({
        MessageGroupId: 'publish',
        MessageDeduplicationId: 'startup-req-1',
      });

      // Without a signing key the resource fails, and says so, instead of hanging the stack.
      const broken = await h.runtime('keys', config);
      const noKey = {
        ...broken,
        deps: {
          ...broken.deps,
          signer: { ...broken.deps.signer, publicKeySpki: () => Promise.reject(new Error('AccessDenied')) },
        },
      };
      await createKeysResourceHandler(noKey)({ ...event, RequestId: 'req-2' }, lambdaContext('keys'));
      expect(responses.at(-1)).toMatchObject({
        body: { Status: 'FAILED', RequestId: 'req-2', Reason: expect.stringContaining('AccessDenied') },
      });

      // A runtime that cannot be built is answered too (FAILED with the reason, SUCCESS for a
      // Delete that has nothing to undo); the first successful build is kept.
      vi.stubEnv('POWERTOOLS_LOG_LEVEL', 'SILENT');
      let builds = 0;
      const lazy = createLazyKeysResourceHandler(async () => {
        builds++;
        if (builds === 1) throw new WasmMirrorError('CONFIG_INVALID', 'config file unreadable');
        return h.runtime('keys', config);
      });
      await lazy({ ...event, RequestId: 'req-3' }, lambdaContext('keys'));
      expect(responses.at(-1)).toMatchObject({
        body: {
          Status: 'FAILED',
          RequestId: 'req-3',
          Reason: expect.stringContaining('CONFIG_INVALID: config file unreadable'),
          PhysicalResourceId: expect.any(String),
        },
      });
      await lazy({ ...event, RequestId: 'req-4' }, lambdaContext('keys'));
      await lazy({ ...event, RequestId: 'req-5' }, lambdaContext('keys'));
      expect(responses.slice(-2)).toMatchObject([
        { body: { Status: 'SUCCESS', RequestId: 'req-4' } },
        { body: { Status: 'SUCCESS', RequestId: 'req-5' } },
      ]);
      expect(builds).toBe(2);
      const failing = createLazyKeysResourceHandler(() => Promise.reject(new Error('no config')));
      await failing(
        { ...event, RequestType: 'Delete', RequestId: 'req-6', PhysicalResourceId: 'keys-json-x' },
        lambdaContext('keys'),
      );
      expect(responses.at(-1)).toMatchObject({
        body: { Status: 'SUCCESS', RequestId: 'req-6', PhysicalResourceId: 'keys-json-x' },
      });

      // The deployed entry point: its environment is missing here, and it still answers.
      vi.stubEnv('WASM_MIRROR_BUCKET', '');
      const entry = await import('../../functions/entry/keys.ts');
      await entry.handler({ ...event, RequestId: 'req-7' }, lambdaContext('keys'));
      expect(responses.at(-1)).toMatchObject({
        method: 'PUT',
        body: {
          Status: 'FAILED',
          RequestId: 'req-7',
          Reason: expect.stringContaining('WASM_MIRROR_BUCKET'),
        },
      });
      await drain(h.emu.sqs, h.publishQueue, async () => {});
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
  it("mirror: a scheduled reconcile lists the source's tags and mirrors what changed, once", async () => {
    // Prepare
    const reconciled = parseConfig(`
mirror: { name: handlers-mesh }
sources:
  - { id: rec, type: dockerhub, registry: "127.0.0.1:5999", insecure: true, repositories: ["plugins/rec"], webhookSecretEnv: HOOK_TOKEN, reconcileInterval: 10m }
`);
    const puller = { ...fakePuller(moduleBytes), listTags: async () => ['1.0', '2.0'] };
    const runtime = await h.runtime('mirror', reconciled, { puller });
    // Records are captured here rather than read back from the FIFO queue the publish test uses.
    const published: { record: { name: string; tag: string } }[] = [];
    runtime.deps.publishQueue = { send: async (body) => void published.push(body as never) };
    const handler = createMirrorQueueHandler(runtime);
    // Act / Assess
    await runtime.deps.mirrorQueue.send({ kind: 'reconcile', sourceId: 'rec' } as never);
    await drain(h.emu.sqs, h.mirrorQueue, handler, { maxRounds: 5 });
    const names = published.map((p) => `${p.record.name}:${p.record.tag}`).filter((n) => n.includes('/rec:'));
    expect(names.sort()).toEqual(['127.0.0.1:5999/plugins/rec:1.0', '127.0.0.1:5999/plugins/rec:2.0']);
    // Nothing changed since: the next tick queues nothing.
    await runtime.deps.mirrorQueue.send({ kind: 'reconcile', sourceId: 'rec' } as never);
    const rounds = await drain(h.emu.sqs, h.mirrorQueue, handler, { maxRounds: 5 });
    expect(rounds.reduce((n, r) => n + r.received, 0)).toBe(1);
    expect(
      parseMirrorMessage('{"kind":"reconcile","sourceId":"gone"}', reconciled, new Date()),
    ).toMatchObject({
      kind: 'ignored',
    });
  });

  it('mirror: processes the records of a batch one after another, never two pulls at once', async () => {
    // Prepare
    let inFlight = 0;
    let most = 0;
    const base = fakePuller(moduleBytes);
    const puller: WasmPuller = {
      ...base,
      async pullToFile(target, dest, options) {
        inFlight++;
        most = Math.max(most, inFlight);
        try {
          await new Promise((resolve) => setTimeout(resolve, 30));
          return await base.pullToFile(target, dest, options);
        } finally {
          inFlight--;
        }
      },
    };
    const runtime = await h.runtime('mirror', config, { puller });
    const published: unknown[] = [];
    runtime.deps.publishQueue = { send: async (body) => void published.push(body) };
    const handler = createMirrorQueueHandler(runtime);
    const receivedAt = new Date().toISOString();
    const batch: SQSEvent = {
      Records: ['seq-a', 'seq-b', 'seq-c', 'seq-d'].map((name, i) =>
        sqsRecord(
          `s${i}`,
          JSON.stringify({
            sourceId: 'local',
            registry: '127.0.0.1:5999',
            repository: `plugins/${name}`,
            tag: '1.0',
            digest: digestOf('1.0'),
            receivedAt,
          }),
          h.mirrorQueue.arn,
        ),
      ),
    };
    // Act
    const result = await handler(batch, lambdaContext('mirror'));
    // Assess
    expect(result.batchItemFailures).toEqual([]);
    expect(published).toHaveLength(4);
    expect(most).toBe(1);
  });
});

describe('queue message parsing', () => {
  it('turns an ECR push event for a configured registry into a job through the ecr parser', () => {
    // Act / Assess
    const msg = parseMirrorMessage(
      JSON.stringify(ecrEvent('111122223333', 'wasm/filter', '2.0')),
      config,
      new Date(),
    );
    expect(msg).toMatchObject({
      kind: 'jobs',
      jobs: [
        {
          sourceId: 'ecr',
          registry: '111122223333.dkr.ecr.eu-west-1.amazonaws.com',
          repository: 'wasm/filter',
          tag: '2.0',
        },
      ],
    });
    expect(
      parseMirrorMessage(JSON.stringify(ecrEvent('999999999999', 'wasm/filter', '2.0')), config, new Date()),
    ).toMatchObject({
      kind: 'ignored',
    });
    // A source configured with the registry's FIPS endpoint matches its (standard-host) events.
    const fips = parseConfig(
      'sources:\n  - { id: ecr, type: ecr, registry: 111122223333.dkr.ecr-fips.eu-west-1.amazonaws.com, repositories: ["wasm/**"] }\n',
    );
    expect(
      parseMirrorMessage(JSON.stringify(ecrEvent('111122223333', 'wasm/filter', '2.0')), fips, new Date()),
    ).toMatchObject({
      kind: 'jobs',
      jobs: [{ registry: '111122223333.dkr.ecr-fips.eu-west-1.amazonaws.com' }],
    });
  });

  it('refuses bodies that are not jobs or publish requests', () => {
    // Act / Assess
    expect(() => parseMirrorMessage('{"sourceId":"local"}', config, new Date())).toThrow(/MirrorJob/);
    expect(() => parseMirrorMessage('not json', config, new Date())).toThrow(/JSON/);
    expect(() => parsePublishRequest('{"kind":"resign","reason":"whenever"}')).toThrow(/PublishRequest/);
    expect(() =>
      parsePublishRequest(
        JSON.stringify({
          kind: 'record',
          record: {
            name: 'ghcr.io/acme/x',
            tag: '1',
            ociDigest: 'sha256:nope',
            sha256: 'zz',
            size: 1,
            format: 'wasm-artifact',
            kind: 'module',
            mirroredAt: 'yesterday',
          },
        }),
      ),
    ).toThrow(/publishable record/);
    expect(parsePublishRequest('{"kind":"resign","reason":"manual"}')).toEqual({
      kind: 'resign',
      reason: 'manual',
    });
  });

  it('names the missing environment variable', () => {
    // Act / Assess
    expect(() => loadFunctionEnv('publish', { WASM_MIRROR_BUCKET: 'b' })).toThrow(
      /WASM_MIRROR_SIGNING_KEY_ID/,
    );
    expect(() => loadFunctionEnv('webhook', {})).toThrow(/WASM_MIRROR_BUCKET/);
    expect(() =>
      loadFunctionEnv('keys', { WASM_MIRROR_BUCKET: 'b', WASM_MIRROR_SIGNING_KEY_ID: 'k' }),
    ).toThrow(/WASM_MIRROR_PUBLISH_QUEUE_URL/);
    expect(
      Object.isFrozen(
        loadFunctionEnv('keys', {
          WASM_MIRROR_BUCKET: 'b',
          WASM_MIRROR_SIGNING_KEY_ID: 'k',
          WASM_MIRROR_PUBLISH_QUEUE_URL: 'https://sqs.example/q.fifo',
        }),
      ),
    ).toBe(true);
  });
});

function sqsRecord(messageId: string, body: string, arn: string): SQSEvent['Records'][number] {
  return {
    messageId,
    receiptHandle: messageId,
    body,
    attributes: {
      ApproximateReceiveCount: '1',
      SentTimestamp: String(Date.now()),
      SenderId: 'AIDAEXAMPLE',
      ApproximateFirstReceiveTimestamp: String(Date.now()),
      MessageGroupId: 'publish',
      MessageDeduplicationId: messageId,
      SequenceNumber: '1',
    },
    messageAttributes: {},
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: arn,
    awsRegion: 'us-east-1',
  };
}

function ecrEvent(account: string, repository: string, tag: string) {
  return {
    version: '0',
    id: `ecr-${Math.random().toString(36).slice(2)}`,
    'detail-type': 'ECR Image Action',
    source: 'aws.ecr',
    account,
    time: new Date().toISOString(),
    region: 'eu-west-1',
    resources: [],
    detail: {
      result: 'SUCCESS',
      'repository-name': repository,
      'image-digest': digestOf(`${repository}:${tag}`),
      'action-type': 'PUSH',
      'image-tag': tag,
    },
  };
}
