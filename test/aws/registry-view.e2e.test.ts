/**
 * The read-only registry API on AWS, end to end: the Debian docker-registry holds the plugins;
 * the mirror and publish Lambda handlers run from fauxqs SQS and write to the fauxqs bucket; the
 * publisher writes the registry view; and `/v2/` is served by the distribution's own CloudFront
 * Function code over that bucket (test/aws/support/cloudfront.ts). skopeo, and the Debian
 * docker-registry as a pull-through cache, read it like any registry: upstream digests and bytes,
 * the listed module inside, and the spec's errors for what the signed manifest does not list.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { createMirrorQueueHandler } from '../../functions/handlers/mirror.ts';
import { createPublishQueueHandler } from '../../functions/handlers/publish.ts';
import { REGISTRY_NOT_FOUND_BODY } from '../../infra/lib/constructs/site-objects.ts';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';
import type { MirrorJob } from '../../shared/core/domain.ts';
import { registryKeys } from '../../shared/core/storage-keys.ts';
import {
  errorCode,
  moduleFromDir,
  rawRequest,
  readDirManifest,
  sha256Hex,
  skopeo,
  skopeoCopy,
  startPullThroughCache,
} from '../oci-endpoint/support.ts';
import { type PushFormat, pushWasm, runCli, startRegistry, type TestRegistry } from '../support/index.ts';
import { proxyWasmModule } from '../support/wasm.ts';
import { type AwsHarness, startAwsHarness } from './support/aws-harness.ts';
import { type CloudFrontStandIn, startCloudFrontStandIn } from './support/cloudfront.ts';
import { pumpOnce, type SqsLambdaHandler } from './support/sqs-driver.ts';

const PLUGINS: { repository: string; format: PushFormat }[] = [
  { repository: 'plugins/artifact', format: 'wasm-artifact' },
  { repository: 'plugins/compat', format: 'compat-oci' },
  { repository: 'plugins/indexed', format: 'index' },
];

describe('the registry API on AWS: publisher-written objects served by the CloudFront Functions', () => {
  let h: AwsHarness;
  let registry: TestRegistry;
  let cdn: CloudFrontStandIn;
  let mirror: SqsLambdaHandler;
  let publish: SqsLambdaHandler;
  let config: MirrorConfig;
  let work: string;
  const pushed = new Map<string, { module: Uint8Array; digest: string }>();

  const get = (path: string, headers: Record<string, string> = {}) =>
    rawRequest(cdn.url, 'GET', path, headers);
  const keysUnder = async (prefix: string) =>
    ((await h.s3.send(new ListObjectsV2Command({ Bucket: h.bucket, Prefix: prefix }))).Contents ?? []).map(
      (o) => o.Key!,
    );

  /** A registry push reaching the mirror queue, then both event source mappings until drained. */
  const mirrorNow = async (repository: string, tag: string) => {
    const job: MirrorJob = {
      sourceId: 'local',
      registry: registry.host,
      repository,
      tag,
      receivedAt: new Date().toISOString(),
    };
    await h.emu.sqs.send(
      new SendMessageCommand({ QueueUrl: h.mirrorQueue.url, MessageBody: JSON.stringify(job) }),
    );
    while ((await pumpOnce(h.emu.sqs, h.mirrorQueue, mirror)).received > 0) {}
    while ((await pumpOnce(h.emu.sqs, h.publishQueue, publish)).received > 0) {}
  };

  beforeAll(async () => {
    vi.stubEnv('POWERTOOLS_METRICS_DISABLED', 'true');
    h = await startAwsHarness({ HOOK_TOKEN: 'registry-view-token-0123456789' });
    registry = await startRegistry();
    config = parseConfig(`
mirror: { name: aws-registry-mesh, manifestTtl: 48h, publishInterval: 0s }
sources:
  - id: local
    type: distribution
    registry: ${registry.host}
    insecure: true
    repositories: ["plugins/**"]
    webhookSecretEnv: HOOK_TOKEN
`);
    mirror = createMirrorQueueHandler(await h.runtime('mirror', config));
    publish = createPublishQueueHandler(await h.runtime('publish', config));
    // What the deploy writes beside the page (SiteObjects): the body of every missing key.
    await h.s3.send(
      new PutObjectCommand({
        Bucket: h.bucket,
        Key: registryKeys.notFound,
        Body: REGISTRY_NOT_FOUND_BODY,
        ContentType: 'application/json; charset=utf-8',
      }),
    );
    cdn = await startCloudFrontStandIn({ s3: h.s3, bucket: h.bucket, sourceIds: ['local'] });
    work = mkdtempSync(join(tmpdir(), 'wm-aws-registry-'));
    for (const { repository, format } of PLUGINS) {
      const module = proxyWasmModule({ marker: `aws registry ${format}` });
      const { digest } = await pushWasm(registry.host, `${repository}:1.0`, module, format);
      pushed.set(repository, { module, digest });
      await mirrorNow(repository, '1.0');
    }
  }, 120_000);

  afterAll(async () => {
    await cdn?.stop();
    await registry?.stop();
    await h?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
    vi.unstubAllEnvs();
  });

  it('answers /v2/ as a registry, and every write with 405 before the bucket is touched', async () => {
    // Act
    const base = await get('/v2/');
    const reads = cdn.originReads.length;
    const writes = await Promise.all(
      ['PUT', 'POST', 'PATCH', 'DELETE'].map((m) =>
        rawRequest(cdn.url, m, '/v2/local/plugins/artifact/manifests/1.0'),
      ),
    );
    // Assess
    expect(base.status).toBe(200);
    expect(base.headers['docker-distribution-api-version']).toBe('registry/2.0');
    expect(writes.map((w) => [w.status, errorCode(w)])).toEqual(writes.map(() => [405, 'UNSUPPORTED']));
    expect(cdn.originReads.length).toBe(reads);
  });

  it.each(PLUGINS)(
    'serves $format to skopeo with the upstream digest, bytes and module',
    async ({ repository }) => {
      // Prepare
      const { module, digest } = pushed.get(repository)!;
      const ref = `local/${repository}:1.0`;
      // Act
      const fromMirror = await skopeo([
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${cdn.host}/${ref}`,
      ]);
      const upstream = await skopeo([
        'inspect',
        '--raw',
        '--tls-verify=false',
        `docker://${registry.host}/${repository}:1.0`,
      ]);
      const head = await rawRequest(cdn.url, 'HEAD', `/v2/${ref.replace(':', '/manifests/')}`);
      const dir = join(work, repository.replaceAll('/', '-'));
      await skopeoCopy(cdn.host, ref, dir);
      // Assess
      expect(fromMirror).toBe(upstream);
      expect(`sha256:${sha256Hex(fromMirror)}`).toBe(digest);
      expect(head.status).toBe(200);
      expect(head.headers['docker-content-digest']).toBe(digest);
      expect(Object.keys(head.headers).filter((k) => k.startsWith('x-amz-meta-'))).toEqual([]);
      expect(sha256Hex(moduleFromDir(dir))).toBe(sha256Hex(module));
    },
  );

  it('serves a blob by digest with byte ranges', async () => {
    // Prepare
    const manifest = JSON.parse(
      (await get('/v2/local/plugins/artifact/manifests/1.0')).body.toString('utf8'),
    ) as { layers: { digest: string; size: number }[] };
    const layer = manifest.layers.at(-1)!;
    const path = `/v2/local/plugins/artifact/blobs/${layer.digest}`;
    // Act
    const whole = await get(path);
    const part = await get(path, { range: 'bytes=0-9' });
    // Assess
    expect(whole.status).toBe(200);
    expect(`sha256:${sha256Hex(whole.body)}`).toBe(layer.digest);
    expect(whole.headers['docker-content-digest']).toBe(layer.digest);
    expect(part.status).toBe(206);
    expect(part.body.equals(whole.body.subarray(0, 10))).toBe(true);
    expect(part.headers['content-range']).toBe(`bytes 0-9/${layer.size}`);
  });

  it('lists tags whole, and page by page through Link headers', async () => {
    // Prepare
    const extra = proxyWasmModule({ marker: 'aws registry second tag' });
    await pushWasm(registry.host, 'plugins/artifact:0.9', extra, 'wasm-artifact');
    await mirrorNow('plugins/artifact', '0.9');
    // Act
    const whole = await get('/v2/local/plugins/artifact/tags/list');
    const seen: string[] = [];
    let next: string | undefined = '/v2/local/plugins/artifact/tags/list?n=1';
    while (next !== undefined) {
      const page = await get(next);
      expect(page.status).toBe(200);
      seen.push(...(JSON.parse(page.body.toString('utf8')) as { tags: string[] }).tags);
      next = /^<([^>]+)>; rel="next"$/.exec(String(page.headers.link ?? ''))?.[1];
    }
    const none = await get('/v2/local/plugins/artifact/tags/list?n=0');
    // Assess
    expect(JSON.parse(whole.body.toString('utf8'))).toEqual({
      name: 'local/plugins/artifact',
      tags: ['0.9', '1.0'],
    });
    expect(seen).toEqual(['0.9', '1.0']);
    expect(JSON.parse(none.body.toString('utf8')).tags).toEqual([]);
    expect(
      (
        await skopeo(['list-tags', '--tls-verify=false', `docker://${cdn.host}/local/plugins/artifact`])
      ).includes('"0.9"'),
    ).toBe(true);
  });

  it('moves a tag with the signed manifest and stops serving the digest no entry reaches', async () => {
    // Prepare
    const before = pushed.get('plugins/compat')!;
    const moved = proxyWasmModule({ marker: 'aws registry moved tag' });
    const { digest } = await pushWasm(registry.host, 'plugins/compat:1.0', moved, 'compat-oci');
    // Act
    await mirrorNow('plugins/compat', '1.0');
    const byTag = await get('/v2/local/plugins/compat/manifests/1.0');
    const old = await get(`/v2/local/plugins/compat/manifests/${before.digest}`);
    // Assess
    expect(byTag.headers['docker-content-digest']).toBe(digest);
    expect(old.status).toBe(404);
    expect(errorCode(old)).toBe('MANIFEST_UNKNOWN');
    expect(await keysUnder(registryKeys.manifest('local/plugins/compat', before.digest))).toEqual([]);
  });

  it('answers what the signed manifest does not list with the spec errors, never upstream bytes', async () => {
    // Prepare: pushed upstream, never mirrored.
    const other = proxyWasmModule({ marker: 'aws registry never mirrored' });
    const { digest } = await pushWasm(registry.host, 'plugins/artifact:9.9', other, 'wasm-artifact');
    // Act
    const cases = {
      unlistedTag: await get('/v2/local/plugins/artifact/manifests/9.9'),
      unreachedDigest: await get(`/v2/local/plugins/artifact/manifests/${digest}`),
      unknownSource: await get('/v2/elsewhere/plugins/artifact/manifests/1.0'),
      dotDot: await get('/v2/local/plugins/../plugins/artifact/manifests/1.0'),
      encodedSlash: await get('/v2/local/plugins%2Fartifact/manifests/1.0'),
      rawKey: await get(`/${registryKeys.manifest('local/plugins/artifact', '1.0')}`),
    };
    // Assess
    expect(Object.fromEntries(Object.entries(cases).map(([k, r]) => [k, [r.status, errorCode(r)]]))).toEqual({
      unlistedTag: [404, 'MANIFEST_UNKNOWN'],
      unreachedDigest: [404, 'MANIFEST_UNKNOWN'],
      unknownSource: [404, 'NAME_UNKNOWN'],
      dotDot: [400, 'NAME_INVALID'],
      encodedSlash: [400, 'NAME_INVALID'],
      // The view's keys are reachable only through /v2/: the default behaviour's function refuses them.
      rawKey: [404, undefined],
    });
    await expect(
      skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${cdn.host}/local/plugins/artifact:9.9`]),
    ).rejects.toThrow(/manifest unknown/i);
  });

  it('renders an oci:// WasmPlugin for the CloudFront host, pinned to what skopeo copies from it', async () => {
    // Prepare: agents and the CLI pin the KMS key out of band.
    const keys = join(work, 'trusted-keys.pem');
    writeFileSync(keys, h.kms.publicKey.export({ type: 'spki', format: 'pem' }) as string);
    // Act
    const { code, out, err } = await runCli([
      'wasmplugin',
      `${registry.host}/plugins/indexed:1.0`,
      '--mirror-url',
      cdn.url,
      '--trusted-keys',
      keys,
      '--mirror-name',
      'aws-registry-mesh',
      '--selector',
      'app=web',
      '--oci',
      '--source',
      'local',
    ]);
    const dir = join(work, 'wasmplugin-indexed');
    await skopeoCopy(cdn.host, 'local/plugins/indexed:1.0', dir);
    // Assess
    expect(code, err).toBe(0);
    const spec = (parse(out) as { spec: { url: string; sha256: string } }).spec;
    expect(spec.url).toBe(`oci://${cdn.host}/local/plugins/indexed:1.0`);
    // An index is pinned to the image Istio loads from it, which skopeo resolves too.
    expect(spec.sha256).toBe(sha256Hex(readDirManifest(dir).bytes));
    expect(spec.sha256).not.toBe(pushed.get('plugins/indexed')!.digest.slice(7));
  });

  it('serves a Distribution registry set up as a pull-through cache of the CloudFront URL', async () => {
    // Prepare
    const cache = await startPullThroughCache(cdn.url);
    try {
      const dir = join(work, 'through-cache');
      // Act
      await skopeoCopy(cache.host, 'local/plugins/artifact:1.0', dir);
      const unlisted = await rawRequest(cache.url, 'GET', '/v2/local/plugins/artifact/manifests/9.9');
      // Assess
      expect(sha256Hex(moduleFromDir(dir))).toBe(sha256Hex(pushed.get('plugins/artifact')!.module));
      expect(`sha256:${sha256Hex(readDirManifest(dir).bytes)}`).toBe(pushed.get('plugins/artifact')!.digest);
      expect(unlisted.status).toBe(404);
    } finally {
      await cache.stop();
    }
  });

  it('writes only under registry/ and keeps its bookkeeping in state/', async () => {
    // Act
    const view = await keysUnder(registryKeys.prefix);
    const pending = await keysUnder('state/registry-pending/');
    const tag = await h.s3.send(
      new GetObjectCommand({ Bucket: h.bucket, Key: registryKeys.manifest('local/plugins/artifact', '1.0') }),
    );
    // Assess
    expect(view.length).toBeGreaterThan(PLUGINS.length * 3);
    expect(view.every((k) => /^registry\/local\/plugins\/[a-z]+\/(manifests|blobs|tags)\//.test(k))).toBe(
      true,
    );
    expect(pending).toEqual([]);
    // The headers CloudFront answers with travel on the object.
    expect(tag.ContentType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(tag.Metadata).toEqual({ 'docker-content-digest': pushed.get('plugins/artifact')!.digest });
  });
});
