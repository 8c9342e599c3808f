/**
 * The embedded end-to-end scenario, run through the Lambda handlers: the Debian docker-registry
 * notifies an API Gateway stand-in that invokes the webhook handler; the mirror and publish
 * handlers are driven from fauxqs SQS by the event source mapping driver; modules and manifests
 * land in the fauxqs bucket; signing goes through the real KMS client to the KMS stand-in; and
 * the agent's verification accepts the manifest and every module from the emulated bucket.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KMSClient } from '@aws-sdk/client-kms';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import {
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
} from '@aws-sdk/client-sqs';
import type { APIGatewayProxyEventV2, CloudFormationCustomResourceCreateEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKeysResourceHandler } from '../../functions/handlers/keys.ts';
import { createMirrorQueueHandler } from '../../functions/handlers/mirror.ts';
import { createPublishQueueHandler } from '../../functions/handlers/publish.ts';
import { createWebhookHandler } from '../../functions/handlers/webhook.ts';
import type { MirrorConfig } from '../../shared/core/config.ts';
import { parseConfig } from '../../shared/core/config.ts';
import type { ManifestPayload } from '../../shared/core/domain.ts';
import { loadTrustedKeys, type TrustedKey, verifyManifest } from '../../shared/core/manifest/index.ts';
import { type PushFormat, pushWasm, startRegistry, type TestRegistry } from '../support/index.ts';
import { opensslVerifies, sha256Of } from '../support/mirror.ts';
import { minimalComponent, proxyWasmModule } from '../support/wasm.ts';
import { type AwsHarness, startAwsHarness } from './support/aws-harness.ts';
import { TEST_CREDENTIALS, TEST_REGION } from './support/fauxqs.ts';
import { lambdaContext, pumpOnce, type SqsLambdaHandler } from './support/sqs-driver.ts';

const TOKEN = 'aws-e2e-hook-token-0123456789';

describe('AWS pipeline through the Lambda handlers: registry push → API → SQS → mirror → FIFO → publish (KMS) → S3', () => {
  let h: AwsHarness;
  let registry: TestRegistry;
  let api: Server;
  let mirror: SqsLambdaHandler;
  let publish: SqsLambdaHandler;
  let pinned: TrustedKey[];
  let config: MirrorConfig;
  const deliveries: number[] = [];

  const getObject = async (key: string) => {
    const out = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: key }));
    return out.Body!.transformToByteArray();
  };

  /** What an agent does: verify latest.json against pinned keys, then every module by sha256. */
  const agentSync = async (): Promise<ManifestPayload> => {
    const verified = verifyManifest(await getObject('manifests/latest.json'), {
      trustedKeys: pinned,
      mirrorName: 'aws-e2e-mesh',
      now: new Date(),
    });
    for (const m of verified.payload.modules) {
      const bytes = await getObject(`modules/sha256/${m.sha256}.wasm`);
      expect(bytes.byteLength).toBe(m.size);
      expect(sha256Of(bytes)).toBe(m.sha256);
    }
    return verified.payload;
  };

  /** Plays both event source mappings until the published manifest satisfies `done`. */
  const runUntil = async (
    done: (p: ManifestPayload) => boolean,
    timeoutMs = 60_000,
  ): Promise<ManifestPayload> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await pumpOnce(h.emu.sqs, h.mirrorQueue, mirror, { redeliverNow: true });
      while ((await pumpOnce(h.emu.sqs, h.publishQueue, publish)).received > 0) {}
      const payload = await agentSync().catch(() => undefined);
      if (payload && done(payload)) return payload;
      if (Date.now() > deadline)
        throw new Error(`manifest not as expected: ${JSON.stringify(payload?.modules)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  beforeAll(async () => {
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    h = await startAwsHarness({ HOOK_TOKEN: TOKEN });

    // API Gateway (HTTP API, payload v2) in front of the webhook handler, for the registry to call.
    let webhook: ReturnType<typeof createWebhookHandler> | undefined;
    api = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', async () => {
        const path = (req.url ?? '/').split('?')[0]!;
        const [, hooks, sourceId, token] = path.split('/');
        const headers = Object.fromEntries(
          Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(',') : (v ?? '')]),
        );
        const event = {
          version: '2.0',
          routeKey: token ? 'POST /hooks/{sourceId}/{token}' : 'POST /hooks/{sourceId}',
          rawPath: path,
          rawQueryString: '',
          headers,
          body: Buffer.concat(chunks).toString('base64'),
          isBase64Encoded: true,
          pathParameters:
            hooks === 'hooks' && sourceId ? { sourceId, ...(token ? { token } : {}) } : undefined,
          requestContext: { http: { method: req.method ?? 'GET', path } },
        } as unknown as APIGatewayProxyEventV2;
        const out = await webhook!(event, lambdaContext('webhook'));
        deliveries.push(out.statusCode ?? 0);
        res.writeHead(out.statusCode ?? 500, out.headers as Record<string, string>).end(out.body);
      });
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;

    registry = await startRegistry({ notificationsUrl: `${apiUrl}/hooks/local`, notificationsToken: TOKEN });
    config = parseConfig(`
mirror: { name: aws-e2e-mesh, manifestTtl: 48h }
sources:
  - id: local
    type: distribution
    registry: ${registry.host}
    insecure: true
    repositories: ["plugins/**"]
    webhookSecretEnv: HOOK_TOKEN
`);
    // One composition root per function, as each Lambda container builds its own.
    webhook = createWebhookHandler(await h.runtime('webhook', config));
    mirror = createMirrorQueueHandler(await h.runtime('mirror', config));
    publish = createPublishQueueHandler(await h.runtime('publish', config));

    // The deployment's custom resource writes keys.json; CloudFormation's response URL is stubbed.
    const keysEvent = {
      RequestType: 'Create',
      ResponseURL: 'http://unused.invalid/',
      StackId: 'stack',
      RequestId: 'r',
      LogicalResourceId: 'KeysJson',
      ResourceType: 'Custom::WasmMirrorKeysJson',
      ServiceToken: 'x',
      ResourceProperties: { ServiceToken: 'x' },
    } as CloudFormationCustomResourceCreateEvent;
    await createKeysResourceHandler(await h.runtime('keys', config), async () => {})(
      keysEvent,
      lambdaContext('keys'),
    );
    // Agents pin the key out of band: here, the stand-in's public key, which must match keys.json.
    pinned = loadTrustedKeys(h.kms.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  });

  afterAll(async () => {
    await registry?.stop();
    if (api) {
      api.closeAllConnections();
      await new Promise<void>((resolve) => api.close(() => resolve()));
    }
    await h?.stop();
    vi.unstubAllEnvs();
  });

  it('mirrors every format pushed to the registry into a KMS-signed manifest the agent accepts', async () => {
    const published = loadTrustedKeys(Buffer.from(await getObject('keys.json')).toString('utf8'));
    expect(published.map((k) => k.keyid)).toEqual(pinned.map((k) => k.keyid));

    const formats: PushFormat[] = ['wasm-artifact', 'compat-oci', 'compat-docker', 'cncf-wasm', 'index'];
    const pushed = new Map<string, { bytes: Uint8Array; digest: string }>();
    for (const format of formats) {
      const bytes = proxyWasmModule({ marker: `aws e2e ${format}` });
      const { digest } = await pushWasm(registry.host, `plugins/${format}:1.0`, bytes, format);
      pushed.set(`${registry.host}/plugins/${format}`, { bytes, digest });
    }
    const component = minimalComponent();
    const { digest } = await pushWasm(registry.host, 'plugins/component:0.1', component, 'cncf-wasm');
    pushed.set(`${registry.host}/plugins/component`, { bytes: component, digest });

    const payload = await runUntil((p) => p.modules.length === pushed.size);
    expect(deliveries.every((s) => s === 200 || s === 202)).toBe(true);
    expect(deliveries).toContain(202);
    expect(payload).toMatchObject({ type: 'wasm-mirror.manifest/v1', mirror: 'aws-e2e-mesh' });
    for (const m of payload.modules) {
      const expected = pushed.get(m.name)!;
      expect(m.ociDigest).toBe(expected.digest);
      expect(m.sha256).toBe(sha256Of(expected.bytes));
      expect(Buffer.compare(await getObject(`modules/sha256/${m.sha256}.wasm`), expected.bytes)).toBe(0);
    }
    const byName = Object.fromEntries(payload.modules.map((m) => [m.name.split('/').pop(), m]));
    expect(byName['compat-docker']!.format).toBe('compat-image');
    expect(byName.component!.kind).toBe('component');

    // The envelope checks out with openssl too: DER ECDSA from KMS over the DSSE PAE.
    const envelope = JSON.parse(Buffer.from(await getObject('manifests/latest.json')).toString('utf8'));
    expect(opensslVerifies(envelope, h.kms.publicKey.export({ type: 'spki', format: 'pem' }) as string)).toBe(
      true,
    );
    const signCalls = h.kms.calls.filter((c) => c.target === 'TrentService.Sign');
    expect(signCalls.length).toBeGreaterThan(0);
    expect(signCalls.filter((c) => c.body.MessageType !== 'DIGEST')).toEqual([]);
    // Each version is kept, create-only, beside latest.json.
    expect(
      Buffer.compare(
        await getObject(`manifests/${payload.version}.json`),
        await getObject('manifests/latest.json'),
      ),
    ).toBe(0);
  });

  it('replaces the entry when a tag moves and keeps the old bytes', async () => {
    const first = proxyWasmModule({ marker: 'aws moving v1' });
    const second = proxyWasmModule({ marker: 'aws moving v2' });
    await pushWasm(registry.host, 'plugins/moving:stable', first, 'wasm-artifact');
    await runUntil((p) => p.modules.some((m) => m.sha256 === sha256Of(first)));
    await pushWasm(registry.host, 'plugins/moving:stable', second, 'wasm-artifact');
    const after = await runUntil((p) => p.modules.some((m) => m.sha256 === sha256Of(second)));
    expect(after.modules.filter((m) => m.name.endsWith('/plugins/moving'))).toHaveLength(1);
    expect(sha256Of(await getObject(`modules/sha256/${sha256Of(first)}.wasm`))).toBe(sha256Of(first));
  });

  it('a record re-driven from the publish dead-letter queue after a newer push never moves the tag back', async () => {
    // Prepare: the first digest is mirrored, but its publish fails (KMS unreachable) until SQS
    // moves the record to the FIFO dead-letter queue.
    const unreachableKms = new KMSClient({
      region: TEST_REGION,
      credentials: TEST_CREDENTIALS,
      endpoint: 'http://127.0.0.1:9',
      maxAttempts: 1,
    });
    const failingPublish = createPublishQueueHandler(
      await h.runtime('publish', config, { kms: unreachableKms }),
    );
    const depth = async (queue: { url: string }) => {
      const out = await h.emu.sqs.send(
        new GetQueueAttributesCommand({
          QueueUrl: queue.url,
          AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
        }),
      );
      return (
        Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) +
        Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0)
      );
    };
    const first = proxyWasmModule({ marker: 'aws redrive v1' });
    const second = proxyWasmModule({ marker: 'aws redrive v2' });
    await pushWasm(registry.host, 'plugins/redrive:stable', first, 'wasm-artifact');
    for (let i = 0; (await depth(h.publishQueue)) === 0; i++) {
      if (i > 300) throw new Error('the first record never reached the publish queue');
      await pumpOnce(h.emu.sqs, h.mirrorQueue, mirror, { redeliverNow: true });
      await new Promise((r) => setTimeout(r, 50));
    }
    for (let i = 0; (await depth(h.publishDlq)) === 0; i++) {
      if (i > 20) throw new Error('the failing record was never dead-lettered');
      await pumpOnce(h.emu.sqs, h.publishQueue, failingPublish, { redeliverNow: true });
    }
    unreachableKms.destroy();
    await pushWasm(registry.host, 'plugins/redrive:stable', second, 'wasm-artifact');
    await runUntil((p) => p.modules.some((m) => m.sha256 === sha256Of(second)));

    // Act: the operator re-drives the dead-letter queue, as the deploy guide says.
    const dead = await h.emu.sqs.send(
      new ReceiveMessageCommand({ QueueUrl: h.publishDlq.url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }),
    );
    expect(dead.Messages?.length).toBe(1);
    for (const m of dead.Messages ?? []) {
      await h.emu.sqs.send(
        new SendMessageCommand({
          QueueUrl: h.publishQueue.url,
          MessageBody: m.Body!,
          MessageGroupId: 'publish',
          MessageDeduplicationId: `redrive-${m.MessageId}`,
        }),
      );
      await h.emu.sqs.send(
        new DeleteMessageCommand({ QueueUrl: h.publishDlq.url, ReceiptHandle: m.ReceiptHandle! }),
      );
    }
    while ((await pumpOnce(h.emu.sqs, h.publishQueue, publish)).received > 0) {}

    // Assess: the re-driven record was about an older observation of the tag: nothing moved back.
    const after = await agentSync();
    const entries = after.modules.filter((m) => m.name.endsWith('/plugins/redrive'));
    expect(entries.map((m) => m.sha256)).toEqual([sha256Of(second)]);
  });
});
