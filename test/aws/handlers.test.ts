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
import { createKeysResourceHandler } from '../../functions/handlers/keys.ts';
import { createMirrorQueueHandler } from '../../functions/handlers/mirror.ts';
import { createPublishQueueHandler } from '../../functions/handlers/publish.ts';
import { parseMirrorMessage, parsePublishRequest } from '../../functions/handlers/records.ts';
import { createWebhookHandler } from '../../functions/handlers/webhook.ts';
import { parseConfig } from '../../shared/config.ts';
import { WasmMirrorError } from '../../shared/errors.ts';
import { loadTrustedKeys, verifyManifest } from '../../shared/manifest/index.ts';
import type { PulledModule, WasmPuller } from '../../shared/ports.ts';
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

/** A puller that "pulls" fixed bytes; the repository `plugins/flaky` fails like an outage. */
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
    const handler = createWebhookHandler(await h.runtime('webhook', config));
    const body = distributionEnvelope([
      { repository: 'plugins/auth', tag: '1.0', digest: digestOf('auth'), host: '127.0.0.1:5999' },
    ]);
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
      digest: digestOf('auth'),
      receivedAt,
    });
    await producer.send({
      sourceId: 'local',
      registry: '127.0.0.1:5999',
      repository: 'plugins/flaky',
      tag: '1.0',
      digest: digestOf('flaky'),
      receivedAt,
    });
    // Not allowed by the source's repository globs: a permanent failure, acknowledged.
    await producer.send({
      sourceId: 'local',
      registry: '127.0.0.1:5999',
      repository: 'other/x',
      tag: '1',
      digest: digestOf('x'),
      receivedAt,
    });
    await producer.send(ecrEvent('999999999999', 'wasm/filter', '2.0') as never);
    await producer.send({ not: 'a job' } as never);

    const rounds = await drain(h.emu.sqs, h.mirrorQueue, handler, { redeliverNow: true, maxRounds: 10 });
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
    const handler = createPublishQueueHandler(await h.runtime('publish', config));
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

    // A scheduled re-sign of a fresh manifest changes nothing; a malformed request is reported.
    const producer = (await h.runtime('mirror', config)).deps.publishQueue;
    await producer.send({ kind: 'resign', reason: 'schedule' });
    await producer.send({ kind: 'bogus' } as never, { dedupeId: 'bogus' });
    const again = await drain(h.emu.sqs, h.publishQueue, handler);
    expect(again.reduce((n, r) => n + r.received, 0)).toBe(2);
    expect(again.flatMap((r) => r.failed)).toHaveLength(1);
    const after = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: 'manifests/latest.json' }));
    expect(Buffer.from(await after.Body!.transformToByteArray()).equals(Buffer.from(bytes))).toBe(true);

    // fauxqs hands out one FIFO message per receive, so a multi-record batch is built here, as
    // Lambda delivers it: several requests become one new version.
    const record = verified.payload.modules[0]!;
    const batch: SQSEvent = {
      Records: [
        { kind: 'record', record: { ...record, tag: '1.1', kind: 'module' } },
        { kind: 'record', record: { ...record, tag: '1.2', kind: 'module' } },
        { kind: 'resign', reason: 'manual' },
      ].map((body, i) => sqsRecord(`m${i}`, JSON.stringify(body), h.publishQueue.arn)),
    };
    const result = await handler(batch, lambdaContext('publish'));
    expect(result.batchItemFailures).toEqual([]);
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
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
  it("mirror: a scheduled reconcile lists the source's tags and mirrors what changed, once", async () => {
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
});

describe('queue message parsing', () => {
  it('turns an ECR push event for a configured registry into a job through the ecr parser', () => {
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
  });

  it('refuses bodies that are not jobs or publish requests', () => {
    expect(() => parseMirrorMessage('{"sourceId":"local"}', config, new Date())).toThrow(/MirrorJob/);
    expect(() => parseMirrorMessage('not json', config, new Date())).toThrow(/JSON/);
    expect(() => parsePublishRequest('{"kind":"resign","reason":"whenever"}')).toThrow(/PublishRequest/);
    expect(parsePublishRequest('{"kind":"resign","reason":"manual"}')).toEqual({
      kind: 'resign',
      reason: 'manual',
    });
  });

  it('names the missing environment variable', () => {
    expect(() => loadFunctionEnv('publish', { WASM_MIRROR_BUCKET: 'b' })).toThrow(
      /WASM_MIRROR_SIGNING_KEY_ID/,
    );
    expect(() => loadFunctionEnv('webhook', {})).toThrow(/WASM_MIRROR_BUCKET/);
    expect(
      Object.isFrozen(loadFunctionEnv('keys', { WASM_MIRROR_BUCKET: 'b', WASM_MIRROR_SIGNING_KEY_ID: 'k' })),
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
