/**
 * The bundles that run in Lambda, run. The CDK app is synthesized once, bundling included (the
 * esbuild build `cdk deploy` uploads, with its ESM `require` banner and the config file copied
 * beside the handler), and each function's asset is imported in a fresh Node process with the
 * environment its template gives it, the stack's references filled in with the emulators', and
 * its `handler` invoked with the event Lambda would send: the keys custom resource, a Harbor
 * webhook through API Gateway, a mirror job from SQS, a FIFO publish batch, and the canary
 * against a mirror served from the bucket. AWS clients reach fauxqs and the KMS / Secrets Manager
 * stand-ins through the SDK's own per-service endpoint variables, so the bundle is not told
 * anything Lambda would not tell it.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { App } from 'aws-cdk-lib';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../infra/lib/app.ts';
import { EXAMPLE_CONFIG } from '../../infra/lib/deployment.ts';
import { REPO_ROOT } from '../../infra/lib/paths.ts';
import { loadConfigFile } from '../../shared/core/config.ts';
import { loadTrustedKeys, verifyIndex } from '../../shared/core/manifest/index.ts';
import { storageKeys } from '../../shared/core/storage-keys.ts';
import { proxyWasmModule } from '../support/wasm.ts';
import { type AwsHarness, startAwsHarness } from './support/aws-harness.ts';
import { type CloudFrontStandIn, startCloudFrontStandIn } from './support/cloudfront.ts';
import { TEST_CREDENTIALS, TEST_REGION } from './support/fauxqs.ts';
import { drain, pumpOnce } from './support/sqs-driver.ts';

/** The example config's mirror and Harbor source, which the synthesized bundles carry. */
const MIRROR = 'prod-mesh';
const HARBOR_SECRET = 'harbor-webhook-secret-0123456789';

interface Bundle {
  /** The asset directory: index.mjs, its source map, the config file. */
  dir: string;
  /** The function's environment as the template sets it (references unresolved). */
  environment: Record<string, unknown>;
  timeoutSeconds: number;
}

describe('the Lambda bundles, built as cdk deploy uploads them', () => {
  let out: string;
  const bundles = new Map<string, Bundle>();
  let h: AwsHarness;
  let mirrorUrl: string;
  let servers: Server[] = [];
  let cdn: CloudFrontStandIn | undefined;
  const responses: unknown[] = [];
  let responseUrl: string;

  beforeAll(async () => {
    out = mkdtempSync(join(tmpdir(), 'wm-bundles-'));
    const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
      context: Record<string, unknown>;
    };
    const app = new App({ outdir: out, context: { ...cdkJson.context, config: EXAMPLE_CONFIG } });
    const { pipeline } = buildApp(app);
    const template = app.synth().getStackByName(pipeline.stackName).template as {
      Resources: Record<string, { Type: string; Properties: unknown }>;
    };
    for (const [id, r] of Object.entries(template.Resources)) {
      // The deploy-time SDK-call provider (status page, error document) is CDK's, not a bundle of ours.
      if (r.Type !== 'AWS::Lambda::Function' || id.startsWith('AWS679f53fac')) continue;
      const props = r.Properties as {
        Code: { S3Key: string };
        Handler: string;
        Timeout: number;
        Environment: { Variables: Record<string, unknown> };
      };
      expect(props.Handler).toBe('index.handler');
      bundles.set(id.replace(/Function[0-9A-F]{8}$/, '').toLowerCase(), {
        dir: join(out, `asset.${props.Code.S3Key.replace(/\.zip$/, '')}`),
        environment: props.Environment.Variables,
        timeoutSeconds: props.Timeout,
      });
    }

    h = await startAwsHarness(
      {
        HARBOR_WEBHOOK_SECRET: HARBOR_SECRET,
        GHCR_WEBHOOK_SECRET: 'ghcr-webhook-secret-0123456789',
        HARBOR_PULL_USER: 'robot',
        HARBOR_PULL_PASSWORD: 'robot-password',
      },
      { secretsPrefix: `wasm-mirror/${MIRROR}/` },
    );
    // CloudFront in front of the bucket, running the distribution's functions, as the canary sees it.
    cdn = await startCloudFrontStandIn({
      s3: h.s3,
      bucket: h.bucket,
      sourceIds: (await loadConfigFile(EXAMPLE_CONFIG)).sources.map((s) => s.id),
    });
    // CloudFormation's pre-signed response URL.
    const cloudFormation = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        responses.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        res.writeHead(200).end();
      });
    });
    servers = [cloudFormation];
    for (const s of servers) await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    mirrorUrl = cdn.url;
    responseUrl = `http://127.0.0.1:${(cloudFormation.address() as AddressInfo).port}/response?sig=x`;
  }, 900_000);

  afterAll(async () => {
    await cdn?.stop();
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    await h?.stop();
    if (out) rmSync(out, { recursive: true, force: true });
  });

  /** The template's value for a variable, with the stack's references resolved to the emulators'. */
  const resolve = (name: string, value: unknown): string => {
    if (typeof value === 'string') return value;
    const refs: Record<string, string> = {
      WASM_MIRROR_BUCKET: h.bucket,
      WASM_MIRROR_MIRROR_QUEUE_URL: h.mirrorQueue.url,
      WASM_MIRROR_PUBLISH_QUEUE_URL: h.publishQueue.url,
      WASM_MIRROR_SIGNING_KEY_ID: h.kms.keyArn,
      WASM_MIRROR_PUBLISHED_KEY_IDS: h.kms.keyArn,
      WASM_MIRROR_CANARY_URL: mirrorUrl,
    };
    const resolved = refs[name];
    if (resolved === undefined) throw new Error(`no stand-in for ${name} = ${JSON.stringify(value)}`);
    return resolved;
  };

  /** Imports the bundle in a fresh `node` and invokes its handler once; its result, or its error. */
  const invoke = async (fn: string, event: unknown): Promise<unknown> => {
    const bundle = bundles.get(fn);
    if (bundle === undefined) throw new Error(`no bundle for ${fn}: ${[...bundles.keys()].join(', ')}`);
    const work = mkdtempSync(join(tmpdir(), `wm-invoke-${fn}-`));
    const eventFile = join(work, 'event.json');
    const resultFile = join(work, 'result.json');
    writeFileSync(eventFile, JSON.stringify(event));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '',
      LAMBDA_TASK_ROOT: bundle.dir,
      AWS_REGION: TEST_REGION,
      AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
      AWS_ENDPOINT_URL_S3: h.s3Endpoint,
      AWS_ENDPOINT_URL_SQS: h.emu.endpoint,
      AWS_ENDPOINT_URL_KMS: h.kms.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: h.secrets.endpoint,
      WASM_MIRROR_S3_FORCE_PATH_STYLE: 'true',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    for (const [name, value] of Object.entries(bundle.environment)) env[name] = resolve(name, value);
    const script = `
      const [file, eventFile, resultFile, timeoutMs] = process.argv.slice(1);
      const { readFileSync, writeFileSync } = await import('node:fs');
      // The SQS client sends to the host its queue URL names, and fauxqs names
      // sqs.<region>.localhost: resolve *.localhost here as Lambda resolves sqs.<region>.amazonaws.com.
      const dns = (await import('node:dns')).default;
      const lookup = dns.lookup;
      dns.lookup = (name, options, callback) => {
        if (typeof options === 'function') [callback, options] = [options, {}];
        if (!name.endsWith('.localhost')) return lookup(name, options, callback);
        if (options?.all) callback(null, [{ address: '127.0.0.1', family: 4 }]);
        else callback(null, '127.0.0.1', 4);
      };
      const deadline = Date.now() + Number(timeoutMs);
      const context = {
        functionName: 'bundle', functionVersion: '$LATEST', awsRequestId: crypto.randomUUID(),
        invokedFunctionArn: 'arn:aws:lambda:${TEST_REGION}:000000000000:function:bundle',
        memoryLimitInMB: '512', logGroupName: '/aws/lambda/bundle', logStreamName: 'bundle',
        callbackWaitsForEmptyEventLoop: true, getRemainingTimeInMillis: () => deadline - Date.now(),
      };
      let outcome;
      try {
        const { handler } = await import(file);
        outcome = { result: (await handler(JSON.parse(readFileSync(eventFile, 'utf8')), context)) ?? null };
      } catch (error) {
        outcome = { error: String(error?.stack ?? error) };
      }
      writeFileSync(resultFile, JSON.stringify(outcome));
      process.exit(0);
    `;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        script,
        join(bundle.dir, 'index.mjs'),
        eventFile,
        resultFile,
        String(bundle.timeoutSeconds * 1000),
      ],
      { cwd: bundle.dir, env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const printed: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => printed.push(c));
    child.stderr.on('data', (c: Buffer) => printed.push(c));
    const code = await new Promise<number | null>((done) => child.on('close', done));
    const output = Buffer.concat(printed).toString('utf8');
    try {
      if (code !== 0 || !existsSync(resultFile)) throw new Error(`${fn} bundle exited ${code}:\n${output}`);
      const outcome = JSON.parse(readFileSync(resultFile, 'utf8')) as { result?: unknown; error?: string };
      if (outcome.error !== undefined) throw new Error(`${fn} handler threw: ${outcome.error}\n${output}`);
      return outcome.result;
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  };

  /** The event source mapping, with the bundle as the function. */
  const viaBundle = (fn: string) => async (event: SQSEvent) => (await invoke(fn, event)) as SQSBatchResponse;

  it('builds one bundle per function, each with the deployment config beside its handler', () => {
    // Assess
    expect([...bundles.keys()].sort()).toEqual(['canary', 'keys', 'mirror', 'publish', 'webhook']);
    for (const [fn, b] of bundles) {
      expect(readFileSync(join(b.dir, 'wasm-mirror.config.yaml'), 'utf8'), fn).toBe(
        readFileSync(EXAMPLE_CONFIG, 'utf8'),
      );
      // The banner that gives bundled CommonJS a require in ESM.
      expect(readFileSync(join(b.dir, 'index.mjs'), 'utf8').startsWith('import { createRequire'), fn).toBe(
        true,
      );
    }
  });

  it('carries in each bundle only the clients its function uses', () => {
    // Prepare: each client by a name its minified code still spells: a protocol target or an operation.
    const clients = {
      s3: 'AmazonS3',
      sqs: 'AmazonSQS',
      kms: 'TrentService',
      secrets: 'GetSecretValue',
      ecr: 'AmazonEC2ContainerRegistry_V20150921',
      registry: 'www-authenticate',
    };
    const uses: Record<string, string[]> = {
      webhook: ['s3', 'secrets', 'sqs'],
      mirror: ['ecr', 'registry', 's3', 'secrets', 'sqs'],
      publish: ['kms', 's3'],
      keys: ['kms', 's3', 'sqs'],
      canary: [],
    };
    // Act / Assess
    for (const [fn, b] of bundles) {
      const code = readFileSync(join(b.dir, 'index.mjs'), 'utf8');
      const carried = Object.entries(clients).flatMap(([client, mark]) =>
        code.includes(mark) ? [client] : [],
      );
      expect(carried.sort(), fn).toEqual(uses[fn]);
    }
  });

  it('keys, webhook, mirror, publish and canary each handle their event, end to end', async () => {
    // Act / Assess
    // The deploy's custom resource: keys.json, then the startup re-sign on the publish queue.
    await invoke('keys', {
      RequestType: 'Create',
      ServiceToken: 'arn:aws:lambda:us-east-1:000000000000:function:keys',
      ResponseURL: responseUrl,
      StackId: 'arn:aws:cloudformation:us-east-1:000000000000:stack/s/1',
      RequestId: 'bundle-1',
      LogicalResourceId: 'KeysJson',
      ResourceType: 'Custom::WasmMirrorKeysJson',
      ResourceProperties: { ServiceToken: 'x' },
    });
    expect(responses).toEqual([expect.objectContaining({ Status: 'SUCCESS', RequestId: 'bundle-1' })]);

    // A Harbor push through API Gateway: authenticated with the secret from Secrets Manager.
    const digest = `sha256:${createHash('sha256').update('bundle test manifest').digest('hex')}`;
    const body = JSON.stringify({
      type: 'PUSH_ARTIFACT',
      occur_at: Math.floor(Date.now() / 1000),
      operator: 'robot$mesh+ci',
      event_data: {
        resources: [{ digest, tag: '1.3.0', resource_url: 'harbor.example.com/mesh/basic-auth:1.3.0' }],
        repository: {
          name: 'basic-auth',
          namespace: 'mesh',
          repo_full_name: 'mesh/basic-auth',
          repo_type: 'private',
        },
      },
    });
    const answer = (await invoke('webhook', {
      version: '2.0',
      routeKey: 'POST /hooks/{sourceId}',
      rawPath: '/hooks/harbor',
      rawQueryString: '',
      headers: { authorization: HARBOR_SECRET, 'content-type': 'application/json' },
      body: Buffer.from(body).toString('base64'),
      isBase64Encoded: true,
      pathParameters: { sourceId: 'harbor' },
      requestContext: {
        accountId: '000000000000',
        apiId: 'api',
        domainName: 'api.example',
        domainPrefix: 'api',
        http: {
          method: 'POST',
          path: '/hooks/harbor',
          protocol: 'HTTP/1.1',
          sourceIp: '192.0.2.1',
          userAgent: 'Harbor',
        },
        requestId: 'r',
        routeKey: 'POST /hooks/{sourceId}',
        stage: '$default',
        time: '',
        timeEpoch: Date.now(),
      },
    })) as { statusCode: number };
    expect(answer.statusCode).toBe(202);
    const queued: unknown[] = [];
    await drain(
      h.emu.sqs,
      h.mirrorQueue,
      async (e: SQSEvent) => void queued.push(...e.Records.map((r) => JSON.parse(r.body))),
    );
    expect(queued).toEqual([
      expect.objectContaining({ sourceId: 'harbor', repository: 'mesh/basic-auth', tag: '1.3.0', digest }),
    ]);

    // A mirror job for bytes pulled before: no registry is reachable from here, so the module and
    // what intake noted about its digest are in the bucket already, as after an earlier pull.
    const moduleBytes = proxyWasmModule({ marker: 'bundle test' });
    const sha256 = createHash('sha256').update(moduleBytes).digest('hex');
    const name = 'harbor.example.com/mesh/basic-auth';
    const put = (key: string, bytes: Uint8Array | string) =>
      h.s3.send(new PutObjectCommand({ Bucket: h.bucket, Key: key, Body: bytes }));
    await put(storageKeys.module(sha256), moduleBytes);
    await put(
      storageKeys.digestNote('pulled', name, digest),
      JSON.stringify({
        ociDigest: digest,
        sha256,
        size: moduleBytes.byteLength,
        format: 'wasm-artifact',
        kind: 'module',
      }),
    );
    await put(storageKeys.digestNote('oci', name, digest), '{}');
    await h.emu.sqs.send(
      new SendMessageCommand({
        QueueUrl: h.mirrorQueue.url,
        MessageBody: JSON.stringify({
          sourceId: 'harbor',
          registry: 'harbor.example.com',
          repository: 'mesh/basic-auth',
          digest,
          receivedAt: new Date().toISOString(),
        }),
      }),
    );
    expect(await pumpOnce(h.emu.sqs, h.mirrorQueue, viaBundle('mirror'))).toMatchObject({
      received: 1,
      deleted: 1,
      failed: [],
    });

    // The FIFO batch: the startup re-sign and the mirror's record, signed through KMS.
    const published = await drain(h.emu.sqs, h.publishQueue, viaBundle('publish'));
    expect(published.reduce((n, r) => n + r.deleted, 0)).toBe(2);
    expect(published.flatMap((r) => r.failed)).toEqual([]);
    const trustedKeys = loadTrustedKeys(h.kms.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const index = await h.s3.send(new GetObjectCommand({ Bucket: h.bucket, Key: 'manifests/v2/index.json' }));
    const verified = verifyIndex(await index.Body!.transformToByteArray(), {
      trustedKeys,
      mirrorName: MIRROR,
      now: new Date(),
    });
    expect(verified.payload.entries).toBe(1);

    // The canary reads it back through the "CDN" and verifies it with the served keys.json.
    const canary = (await invoke('canary', {
      version: '0',
      id: 'canary-1',
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      account: '000000000000',
      time: new Date().toISOString(),
      region: TEST_REGION,
      resources: [],
      detail: {},
    })) as { path: string; version: number };
    expect(canary).toMatchObject({ path: 'manifests/v2/index.json', version: verified.payload.version });
  }, 300_000);
});
