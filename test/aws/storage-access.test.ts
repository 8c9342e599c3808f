/**
 * Every S3 request the functions make, as the synthesized templates would judge it. The keys,
 * webhook, mirror and publish handlers run a push end to end on fauxqs (a real pull from a
 * scripted registry, manifest v2 with v1 beside it, and the scheduled re-sign deleting module
 * bytes unlisted for longer than a manifest lives), each with an S3 client that records what it
 * sends; then each request is checked against that function's IAM grants in the pipeline stack
 * and against the bucket policy's create-only rule in the storage stack. A grant that does not
 * follow the code (a new prefix, a delete, a replaced key) fails here rather than in AWS.
 */
import { createHash } from 'node:crypto';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { Template } from 'aws-cdk-lib/assertions';
import { Template as Templates } from 'aws-cdk-lib/assertions';
import type { APIGatewayProxyEventV2, CloudFormationCustomResourceCreateEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { FunctionRole } from '../../functions/config.ts';
import { createKeysResourceHandler } from '../../functions/handlers/keys.ts';
import { createMirrorQueueHandler } from '../../functions/handlers/mirror.ts';
import { createPublishQueueHandler } from '../../functions/handlers/publish.ts';
import { createWebhookHandler } from '../../functions/handlers/webhook.ts';
import { parseConfig } from '../../shared/core/config.ts';
import {
  actionsOf,
  deniedWithoutIfNoneMatch,
  FUNCTION_ROLES,
  objectKeyOf,
  statementsOf,
  synthApp,
} from '../infra/helpers.ts';
import { type FakeRegistry, MEDIA, proxyWasmModule, startFakeRegistry } from '../support/index.ts';
import { distributionEnvelope } from '../support/mirror.ts';
import { type AwsHarness, startAwsHarness } from './support/aws-harness.ts';
import { TEST_CREDENTIALS, TEST_REGION } from './support/fauxqs.ts';
import { drain, lambdaContext, pumpOnce } from './support/sqs-driver.ts';

const TOKEN = 'storage-access-token-0123456789';

interface S3Request {
  fn: FunctionRole;
  command: string;
  key: string | undefined;
  prefix: string | undefined;
  ifNoneMatch: boolean;
}

/** The IAM action S3 authorizes each command the adapter sends as. */
const ACTION: Record<string, string> = {
  GetObjectCommand: 's3:GetObject',
  HeadObjectCommand: 's3:GetObject',
  PutObjectCommand: 's3:PutObject',
  CreateMultipartUploadCommand: 's3:PutObject',
  UploadPartCommand: 's3:PutObject',
  CompleteMultipartUploadCommand: 's3:PutObject',
  AbortMultipartUploadCommand: 's3:AbortMultipartUpload',
  DeleteObjectCommand: 's3:DeleteObject',
  ListObjectsV2Command: 's3:ListBucket',
  CopyObjectCommand: 's3:PutObject',
  'CopyObjectCommand(source)': 's3:GetObject',
};

/** IAM resource patterns: `*` any run of characters, `?` one. */
const iamMatch = (pattern: string, key: string) =>
  new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  ).test(key);

describe('S3 requests the functions make, against the grants and bucket policy they are deployed with', () => {
  let h: AwsHarness;
  let fake: FakeRegistry;
  let pipeline: Template;
  let storage: Template;
  const requests: S3Request[] = [];
  const clients: S3Client[] = [];

  /** An S3 client for one function that records every request before sending it. */
  const recordingS3 = (fn: FunctionRole): S3Client => {
    const client = new S3Client({
      region: TEST_REGION,
      credentials: TEST_CREDENTIALS,
      endpoint: h.s3Endpoint,
      forcePathStyle: true,
    });
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const input = args.input as {
          Key?: string;
          Prefix?: string;
          IfNoneMatch?: string;
          CopySource?: string;
        };
        const command = context.commandName ?? '?';
        requests.push({
          fn,
          command,
          key: input.Key,
          prefix: input.Prefix,
          ifNoneMatch: input.IfNoneMatch !== undefined,
        });
        // A copy is authorized as a read of its source (`<bucket>/<key>`) and a write of its key.
        if (input.CopySource !== undefined) {
          const source = decodeURIComponent(input.CopySource.slice(input.CopySource.indexOf('/') + 1));
          requests.push({
            fn,
            command: 'CopyObjectCommand(source)',
            key: source,
            prefix: undefined,
            ifNoneMatch: false,
          });
        }
        return next(args);
      },
      { step: 'initialize', name: 'record' },
    );
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    const stacks = synthApp();
    pipeline = Templates.fromStack(stacks.pipeline);
    storage = Templates.fromStack(stacks.storage);
    h = await startAwsHarness({ HOOK_TOKEN: TOKEN });
    fake = await startFakeRegistry();
  });

  afterAll(async () => {
    for (const c of clients) c.destroy();
    await fake?.stop();
    await h?.stop();
    vi.unstubAllEnvs();
  });

  it('asks only for what each function is granted, and writes replaced keys only where the bucket allows it', async () => {
    // Prepare
    const config = parseConfig(`
mirror: { name: access-mesh, manifestTtl: 48h, publishInterval: 0s, gcGrace: 1h }
sources:
  - { id: local, type: distribution, registry: "${fake.host}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN, retention: { keepTags: 1 } }
`);
    let now = new Date();
    const clock = { now: () => now };
    const runtimeFor = (fn: FunctionRole) => h.runtime(fn, config, { s3: recordingS3(fn), clock });

    // Act
    // The deploy: keys.json, and the startup re-sign queued.
    const keysEvent = {
      RequestType: 'Create',
      ResponseURL: 'http://unused.invalid/',
      StackId: 'stack',
      RequestId: 'access-1',
      LogicalResourceId: 'KeysJson',
      ResourceType: 'Custom::WasmMirrorKeysJson',
      ServiceToken: 'x',
      ResourceProperties: { ServiceToken: 'x' },
    } as CloudFormationCustomResourceCreateEvent;
    await createKeysResourceHandler(await runtimeFor('keys'), async () => {})(
      keysEvent,
      lambdaContext('keys'),
    );

    // A push: the registry's webhook, the mirror's pull, the publish.
    const bytes = proxyWasmModule({ marker: 'storage access' });
    const image = fake.putImage('plugins/filter', '1.0', {
      config: { mediaType: MEDIA.wasmArtifactConfig, bytes: new TextEncoder().encode('{}') },
      layers: [{ mediaType: MEDIA.wasmArtifactLayer, bytes }],
    });
    const webhook = createWebhookHandler(await runtimeFor('webhook'));
    const body = distributionEnvelope([
      { repository: 'plugins/filter', tag: '1.0', digest: image.digest, host: fake.host },
    ]);
    const answer = await webhook(
      {
        version: '2.0',
        routeKey: 'POST /hooks/{sourceId}',
        rawPath: '/hooks/local',
        rawQueryString: '',
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        body,
        isBase64Encoded: false,
        pathParameters: { sourceId: 'local' },
        requestContext: { http: { method: 'POST', path: '/hooks/local' } },
      } as unknown as APIGatewayProxyEventV2,
      lambdaContext('webhook'),
    );
    expect(answer.statusCode).toBe(202);
    const mirror = createMirrorQueueHandler(await runtimeFor('mirror'));
    expect(await pumpOnce(h.emu.sqs, h.mirrorQueue, mirror)).toMatchObject({ received: 1, failed: [] });
    const publish = createPublishQueueHandler(await runtimeFor('publish'));
    const published = await drain(h.emu.sqs, h.publishQueue, publish);
    expect(published.flatMap((r) => r.failed)).toEqual([]);

    // A newer tag: retention (keepTags 1) unlists 1.0, whose kept content goes after the grace.
    now = new Date(now.getTime() + 60_000);
    const newer = fake.putImage('plugins/filter', '2.0', {
      config: { mediaType: MEDIA.wasmArtifactConfig, bytes: new TextEncoder().encode('{"v":2}') },
      layers: [
        { mediaType: MEDIA.wasmArtifactLayer, bytes: proxyWasmModule({ marker: 'storage access 2' }) },
      ],
    });
    await h.emu.sqs.send(
      new SendMessageCommand({
        QueueUrl: h.mirrorQueue.url,
        MessageBody: JSON.stringify({
          sourceId: 'local',
          registry: fake.host,
          repository: 'plugins/filter',
          tag: '2.0',
          digest: newer.digest,
          receivedAt: now.toISOString(),
        }),
      }),
    );
    expect(await pumpOnce(h.emu.sqs, h.mirrorQueue, mirror)).toMatchObject({ received: 1, failed: [] });
    expect((await drain(h.emu.sqs, h.publishQueue, publish)).flatMap((r) => r.failed)).toEqual([]);

    // Bytes no manifest lists: the scheduled re-sign notes them, and deletes them once they have
    // been unlisted for longer than a manifest lives (48 h) plus the grace period.
    const stray = createHash('sha256').update('stray module').digest('hex');
    await h.s3.send(
      new PutObjectCommand({ Bucket: h.bucket, Key: `modules/sha256/${stray}.wasm`, Body: 'stray' }),
    );
    const producer = (await h.runtime('mirror', config)).deps.publishQueue;
    await producer.send({ kind: 'resign', reason: 'schedule' }, { dedupeId: 'schedule-1' });
    await drain(h.emu.sqs, h.publishQueue, publish);
    now = new Date(now.getTime() + 50 * 3600_000);
    await producer.send({ kind: 'resign', reason: 'schedule' }, { dedupeId: 'schedule-2' });
    const resigned = await drain(h.emu.sqs, h.publishQueue, publish);
    expect(resigned.flatMap((r) => r.failed)).toEqual([]);

    // Assess: the scenario covered what the grants must allow.
    const seen = (fn: FunctionRole, command: string, key: RegExp, ifNoneMatch?: boolean) =>
      requests.some(
        (r) =>
          r.fn === fn &&
          r.command === command &&
          key.test(r.key ?? r.prefix ?? '') &&
          (ifNoneMatch === undefined || r.ifNoneMatch === ifNoneMatch),
      );
    expect(seen('publish', 'PutObjectCommand', /^manifests\/v2\/index\.json$/, false)).toBe(true);
    expect(seen('publish', 'PutObjectCommand', /^manifests\/v2\/index\/\d+\.json$/, true)).toBe(true);
    expect(
      seen('publish', 'PutObjectCommand', /^manifests\/v2\/nodes\/sha256\/[0-9a-f]{64}\.json$/, true),
    ).toBe(true);
    expect(seen('publish', 'PutObjectCommand', /^manifests\/latest\.json$/, false)).toBe(true);
    expect(seen('publish', 'ListObjectsV2Command', /^modules\/sha256\/$/)).toBe(true);
    expect(seen('publish', 'PutObjectCommand', new RegExp(`^state/unlisted/${stray}$`))).toBe(true);
    expect(seen('publish', 'DeleteObjectCommand', new RegExp(`^modules/sha256/${stray}\\.wasm$`))).toBe(true);
    expect(seen('publish', 'DeleteObjectCommand', new RegExp(`^state/unlisted/${stray}$`))).toBe(true);
    expect(seen('mirror', 'PutObjectCommand', /^modules\/sha256\/[0-9a-f]{64}\.wasm$/, true)).toBe(true);
    expect(seen('webhook', 'PutObjectCommand', /^state\/deliveries\//)).toBe(true);
    expect(seen('keys', 'PutObjectCommand', /^keys\.json$/, false)).toBe(true);
    // Kept content of the unlisted tag: noted, then deleted with its note and reference markers.
    expect(seen('publish', 'PutObjectCommand', /^state\/unlisted-oci\//)).toBe(true);
    expect(seen('publish', 'DeleteObjectCommand', /^blobs\/sha256\/[0-9a-f]{64}$/)).toBe(true);
    expect(seen('publish', 'DeleteObjectCommand', /^state\/oci\//)).toBe(true);
    expect(seen('publish', 'DeleteObjectCommand', /^state\/oci-refs\//)).toBe(true);
    expect(
      seen('publish', 'DeleteObjectCommand', /^registry\/local\/plugins\/filter\/manifests\/1\.0$/),
    ).toBe(true);
    // The registry view: tags replaced in place, blobs copied from the kept content.
    expect(
      seen('publish', 'PutObjectCommand', /^registry\/local\/plugins\/[a-z]+\/manifests\/1\.0$/, false),
    ).toBe(true);
    expect(
      seen('publish', 'CopyObjectCommand', /^registry\/local\/plugins\/[a-z]+\/blobs\/sha256:[0-9a-f]{64}$/),
    ).toBe(true);
    expect(seen('publish', 'CopyObjectCommand(source)', /^blobs\/sha256\/[0-9a-f]{64}$/)).toBe(true);

    const refused: string[] = [];
    for (const r of requests) {
      const action = ACTION[r.command];
      const what = `${r.fn}: ${r.command} ${r.key ?? `(prefix ${r.prefix ?? ''})`}`;
      if (action === undefined) {
        refused.push(`${what}: no IAM action known for this command`);
        continue;
      }
      const allows = statementsOf(pipeline, FUNCTION_ROLES[r.fn]).filter(
        (s) => s.Effect === 'Allow' && actionsOf(s).includes(action),
      );
      const allowed =
        action === 's3:ListBucket'
          ? allows.some((s) => [s.Resource].flat().some((res) => objectKeyOf(res) === undefined))
          : allows.some((s) =>
              [s.Resource].flat().some((res) => {
                const pattern = objectKeyOf(res);
                return pattern !== undefined && iamMatch(pattern, r.key ?? '');
              }),
            );
      if (!allowed) refused.push(`${what}: not granted to its role`);
      const completesAnObject =
        r.command === 'PutObjectCommand' ||
        r.command === 'CompleteMultipartUploadCommand' ||
        r.command === 'CopyObjectCommand';
      if (completesAnObject && !r.ifNoneMatch && deniedWithoutIfNoneMatch(storage, r.key ?? '')) {
        refused.push(`${what}: replaced without If-None-Match where the bucket policy allows only creation`);
      }
    }
    expect(refused).toEqual([]);
  });
});
