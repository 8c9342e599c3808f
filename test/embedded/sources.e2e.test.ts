/**
 * Every sender that cannot be a CNCF Distribution registry, end to end through the embedded
 * server: GitHub Packages (signed `package` / `registry_package` events), CloudEvents (zot, binary
 * and structured mode), Harbor (default format, bare auth header), Quay and Docker Hub (token in
 * the URL path, tag only). Each delivery is shaped like its fixture in test/fixtures/webhooks but
 * names a module really pushed to a local registry, which itself sends no notifications: the
 * deliveries below are the only thing that makes the mirror act. Each must end in the signed
 * manifest with byte-exact served modules; forged deliveries get 401 and change nothing; a
 * replayed delivery id is acknowledged and does no second mirror.
 */
import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ManifestPayload } from '../../shared/core/domain.ts';
import type { EmbeddedMirror } from '../../shared/embedded/runtime.ts';
import {
  type Harness,
  MEDIA,
  type PushFormat,
  pushWasm,
  startHarness,
  type TestRegistry,
} from '../support/index.ts';
import {
  type FetchedManifest,
  opensslVerifies,
  sha256Of,
  waitForManifest,
  waitForQueuesSettled,
} from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'webhooks');

const SECRETS = {
  GITHUB_HOOK_SECRET: 'gh-hmac-secret-5f0c2a9e7d',
  CE_HOOK_TOKEN: 'ce-static-token-81b4e6f2c3',
  HARBOR_HOOK_AUTH: 'harbor-auth-value-2d7a9c4e1b',
  QUAY_HOOK_TOKEN: 'quay-path-token-6e3f1a8b0c',
  HUB_HOOK_TOKEN: 'hub-path-token-9a2c5e7f4d',
} as const;

const UNAUTHENTICATED = { code: 'WEBHOOK_UNAUTHENTICATED', message: 'authentication failed' };

interface Pushed {
  repository: string;
  tag: string;
  digest: string;
  bytes: Uint8Array;
}

type Json = Record<string, unknown>;

/** A fresh copy of a sender's fixture payload or headers. */
function fixture<T = Json>(type: string, name: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, type, name), 'utf8')) as T;
}

function githubSignature(secret: string, body: string | Uint8Array): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

function basic(user: string, password: string): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** Sum of every series of a counter whose labels include all of `labels`. */
function counter(text: string, name: string, labels: Record<string, string>): number {
  let total = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m === null || m[1] !== name) continue;
    const set = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => set.includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}

describe('embedded mirror: GitHub, CloudEvents, Harbor, Quay and Docker Hub deliveries → signed manifest', () => {
  let registry: TestRegistry;
  let mirror: EmbeddedMirror;
  let publicKeyPem: string;
  let keyId: string;

  const name = (repository: string) => `${registry.host}/${repository}`;

  const push = async (
    repository: string,
    tag: string,
    marker: string,
    format: PushFormat = 'wasm-artifact',
  ): Promise<Pushed> => {
    const bytes = proxyWasmModule({ marker });
    const { digest } = await pushWasm(registry.host, `${repository}:${tag}`, bytes, format);
    return { repository, tag, digest, bytes };
  };

  /** The manifest the registry stores for a reference, as raw text (zot copies it into its events). */
  const registryManifest = async (repository: string, reference: string) => {
    const res = await fetch(`${registry.url}/v2/${repository}/manifests/${reference}`, {
      headers: { accept: [MEDIA.ociManifest, MEDIA.ociIndex, MEDIA.dockerManifest].join(', ') },
    });
    expect(res.status).toBe(200);
    return { text: await res.text(), mediaType: res.headers.get('content-type') ?? '' };
  };

  const post = (path: string, body: string, headers: Record<string, string>) =>
    fetch(`${mirror.url}${path}`, { method: 'POST', headers, body });

  const postJson = async (path: string, body: string, headers: Record<string, string>) => {
    const res = await post(path, body, headers);
    return {
      status: res.status,
      body: (await res.json()) as {
        code?: string;
        message?: string;
        accepted?: number;
        duplicate?: boolean;
        ignored?: { reason: string; detail?: string }[];
      },
    };
  };

  const metrics = async () => (await fetch(`${mirror.url}/metrics`)).text();

  const queuesSettled = () => waitForQueuesSettled(mirror.url);

  const expectRefused = async (path: string, body: string, headers: Record<string, string>, what: string) => {
    const res = await postJson(path, body, headers);
    expect(res.status, what).toBe(401);
    expect(res.body, what).toEqual(UNAUTHENTICATED);
  };

  /** Waits until every module is listed under its (name, tag); checks signature, entry and served bytes. */
  const expectMirrored = async (...modules: Pushed[]): Promise<FetchedManifest> => {
    const listed = (p: ManifestPayload, m: Pushed) =>
      p.modules.find((e) => e.name === name(m.repository) && e.tag === m.tag);
    const manifest = await waitForManifest(
      mirror.url,
      (p) => modules.every((m) => listed(p, m)?.ociDigest === m.digest),
      60_000,
    );
    expect(manifest.payload.mirror).toBe('sources-e2e');
    expect(manifest.envelope.signatures[0]!.keyid).toBe(keyId);
    expect(opensslVerifies(manifest.envelope, publicKeyPem)).toBe(true);
    for (const m of modules) {
      const entry = listed(manifest.payload, m)!;
      expect(entry.sha256, m.repository).toBe(sha256Of(m.bytes));
      expect(entry.size, m.repository).toBe(m.bytes.length);
      const res = await fetch(`${mirror.url}/modules/sha256/${entry.sha256}.wasm`);
      expect(res.status, m.repository).toBe(200);
      const served = new Uint8Array(await res.arrayBuffer());
      expect(sha256Of(served), m.repository).toBe(entry.sha256);
      expect(Buffer.compare(served, m.bytes), m.repository).toBe(0);
    }
    return manifest;
  };

  /** A module announced only by forged deliveries is never listed and its bytes are never stored. */
  const expectNeverMirrored = async (forged: Pushed) => {
    const latest = await waitForManifest(mirror.url, () => true);
    expect(latest.payload.modules.filter((e) => e.name === name(forged.repository))).toEqual([]);
    const res = await fetch(`${mirror.url}/modules/sha256/${sha256Of(forged.bytes)}.wasm`);
    await res.arrayBuffer();
    expect(res.status).toBe(404);
  };

  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({
      mirrorName: 'sources-e2e',
      mirrorSettings: 'manifestTtl: 48h',
      env: { ...SECRETS },
      sources: `  - id: github
    type: github
    registry: "{registry}"
    insecure: true
    repositories: ["ghcr/**"]
    webhookSecretEnv: GITHUB_HOOK_SECRET
  - id: ce
    type: cloudevents
    registry: "{registry}"
    insecure: true
    repositories: ["zot/**"]
    webhookSecretEnv: CE_HOOK_TOKEN
  - id: harbor
    type: harbor
    registry: "{registry}"
    insecure: true
    repositories: ["harbor/**"]
    webhookSecretEnv: HARBOR_HOOK_AUTH
  - id: quay
    type: quay
    registry: "{registry}"
    insecure: true
    repositories: ["quay/**"]
    webhookSecretEnv: QUAY_HOOK_TOKEN
  - id: hub
    type: dockerhub
    registry: "{registry}"
    insecure: true
    repositories: ["hub/**"]
    webhookSecretEnv: HUB_HOOK_TOKEN`,
    });
    ({ registry, mirror } = harness);
    const keys = (await (await fetch(`${mirror.url}/keys.json`)).json()) as {
      keys: { keyid: string; publicKey: string }[];
    };
    expect(keys.keys).toHaveLength(1);
    publicKeyPem = keys.keys[0]!.publicKey;
    keyId = keys.keys[0]!.keyid;
  });

  afterAll(() => harness?.stop());

  describe('github (X-Hub-Signature-256 over the raw body)', () => {
    const HOOK = '/hooks/github';

    /** A `registry_package` / `package` delivery shaped like GitHub's, naming a pushed module. */
    const githubDelivery = (
      event: 'registry_package' | 'package',
      m: { repository: string; tag: string; digest: string },
    ) => {
      const payload = fixture(
        'github',
        event === 'package' ? 'package-published.json' : 'registry_package-published.json',
      );
      const pkg = payload[event] as Json;
      const [namespace, ...rest] = m.repository.split('/');
      pkg.namespace = namespace;
      pkg.name = rest.join('/');
      (pkg.owner as Json).login = namespace;
      (pkg.registry as Json).url = `http://${registry.host}/${namespace}`;
      const version = pkg.package_version as Json;
      version.version = m.digest;
      version.name = m.digest;
      const container = version.container_metadata as Json;
      container.tag = { name: m.tag, digest: m.digest };
      (container.manifest as Json).digest = m.digest;
      const ref = m.tag === '' ? `@${m.digest}` : `:${m.tag}`;
      version.package_url = `${registry.host}/${m.repository}${ref}`;
      version.installation_command = `docker pull ${registry.host}/${m.repository}${ref}`;
      // Indented like no re-serialisation would produce: the HMAC must cover these exact bytes.
      return JSON.stringify(payload, null, 3);
    };

    const githubHeaders = (event: string, body: string, deliveryId = randomUUID()) => ({
      ...fixture<Record<string, string>>('github', 'headers.json'),
      'X-GitHub-Event': event,
      'X-GitHub-Delivery': deliveryId,
      'X-Hub-Signature-256': githubSignature(SECRETS.GITHUB_HOOK_SECRET, body),
    });

    it('mirrors a signed registry_package delivery; refuses forged ones; a replayed delivery id does nothing', async () => {
      // Prepare
      const [module, forged, other] = await Promise.all([
        push('ghcr/basic-auth', '1.12.0', 'github registry_package'),
        push('ghcr/forged', '6.6.6', 'github forged'),
        push('ghcr/second-body', '1.0.0', 'github same id other body'),
      ]);

      // Act / Assess: forged deliveries are refused, and counted as such.
      const forgedBody = githubDelivery('registry_package', forged);
      const before = await metrics();
      await expectRefused(
        HOOK,
        forgedBody,
        {
          ...githubHeaders('registry_package', forgedBody),
          'X-Hub-Signature-256': githubSignature('not-the-secret', forgedBody),
        },
        'HMAC with the wrong secret',
      );
      await expectRefused(
        HOOK,
        forgedBody,
        {
          ...githubHeaders('registry_package', forgedBody),
          'X-Hub-Signature-256': githubSignature(
            SECRETS.GITHUB_HOOK_SECRET,
            JSON.stringify(JSON.parse(forgedBody)),
          ),
        },
        'HMAC over the re-serialised body',
      );
      const signedElsewhere = githubDelivery('registry_package', module);
      await expectRefused(
        HOOK,
        forgedBody,
        {
          ...githubHeaders('registry_package', forgedBody),
          'X-Hub-Signature-256': githubSignature(SECRETS.GITHUB_HOOK_SECRET, signedElsewhere),
        },
        'HMAC of another delivery',
      );
      const { 'X-Hub-Signature-256': _, ...unsigned } = githubHeaders('registry_package', forgedBody);
      await expectRefused(HOOK, forgedBody, unsigned, 'no signature');
      await expectRefused(
        HOOK,
        forgedBody,
        {
          ...unsigned,
          'X-Hub-Signature': githubSignature(SECRETS.GITHUB_HOOK_SECRET, forgedBody).replace('256', '1'),
        },
        'only the legacy SHA-1 header',
      );
      const afterForgeries = await metrics();
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', {
          source: 'github',
          outcome: 'unauthenticated',
        }),
      ).toBe(
        counter(before, 'wasm_mirror_webhooks_total', { source: 'github', outcome: 'unauthenticated' }) + 5,
      );
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', { source: 'github', outcome: 'accepted' }),
      ).toBe(counter(before, 'wasm_mirror_webhooks_total', { source: 'github', outcome: 'accepted' }));

      // Act / Assess: the genuine delivery.
      const body = githubDelivery('registry_package', module);
      const headers = githubHeaders('registry_package', body);
      const first = await postJson(HOOK, body, headers);
      expect(first.status).toBe(202);
      expect(first.body.accepted).toBe(1);
      const mirrored = await expectMirrored(module);
      await expectNeverMirrored(forged);

      // Act / Assess: GitHub redelivers with the same X-GitHub-Delivery; acknowledged, nothing done twice.
      const settled = await metrics();
      const mirroredBefore = counter(settled, 'wasm_mirror_mirror_results_total', {
        source: 'github',
        reason: 'mirrored',
      });
      expect(mirroredBefore).toBe(1);
      const replay = await postJson(HOOK, body, headers);
      expect(replay.status).toBeGreaterThanOrEqual(200);
      expect(replay.status).toBeLessThan(300);
      expect(replay.body).toMatchObject({ duplicate: true, accepted: 0 });
      // The same delivery id on another (validly signed) body is still that delivery.
      const otherBody = githubDelivery('registry_package', other);
      const sameId = await postJson(
        HOOK,
        otherBody,
        githubHeaders('registry_package', otherBody, headers['X-GitHub-Delivery']),
      );
      expect(sameId.status).toBe(200);
      expect(sameId.body).toMatchObject({ duplicate: true, accepted: 0 });

      // Assess: once the queues settle, nothing was mirrored a second time.
      await queuesSettled();
      const afterReplay = await metrics();
      expect(
        counter(afterReplay, 'wasm_mirror_mirror_results_total', { source: 'github', reason: 'mirrored' }),
      ).toBe(mirroredBefore);
      expect(counter(afterReplay, 'wasm_mirror_mirror_results_total', { source: 'github' })).toBe(
        counter(settled, 'wasm_mirror_mirror_results_total', { source: 'github' }),
      );
      expect(
        counter(afterReplay, 'wasm_mirror_webhooks_total', { source: 'github', outcome: 'duplicate' }),
      ).toBe(counter(settled, 'wasm_mirror_webhooks_total', { source: 'github', outcome: 'duplicate' }) + 2);
      const latest = await waitForManifest(mirror.url, () => true);
      expect(latest.payload.version).toBe(mirrored.payload.version);
      await expectNeverMirrored(other);
    });

    it('mirrors the tagged index of a multi-arch `package` push and ignores its untagged platform event', async () => {
      // Prepare
      const module = await push('ghcr/multi-arch', '2.0.0', 'github multi-arch index', 'index');
      const index = JSON.parse((await registryManifest(module.repository, module.digest)).text) as {
        manifests: { digest: string }[];
      };
      const platformDigest = index.manifests[0]!.digest;

      // Act / Assess: the untagged platform event is ignored.
      const untagged = githubDelivery('package', {
        repository: module.repository,
        tag: '',
        digest: platformDigest,
      });
      const ignored = await postJson(HOOK, untagged, githubHeaders('package', untagged));
      expect(ignored.status).toBe(200);
      expect(ignored.body.accepted).toBe(0);
      expect(ignored.body.ignored?.map((i) => i.reason)).toEqual(['untagged']);

      // Act / Assess: the tagged index is mirrored.
      const tagged = githubDelivery('package', module);
      const accepted = await postJson(HOOK, tagged, githubHeaders('package', tagged));
      expect(accepted.status).toBe(202);
      expect(accepted.body.accepted).toBe(1);
      const manifest = await expectMirrored(module);
      expect(manifest.payload.modules.filter((e) => e.name === name(module.repository))).toHaveLength(1);
    });
  });

  describe('cloudevents (zot, static header or Basic)', () => {
    const HOOK = '/hooks/ce';

    const zotData = async (m: Pushed) => {
      const data = fixture('cloudevents', 'zot-binary-data.json');
      const stored = await registryManifest(m.repository, m.digest);
      data.name = m.repository;
      data.reference = m.tag;
      data.digest = m.digest;
      data.mediaType = stored.mediaType;
      data.manifest = stored.text;
      return data;
    };

    const binaryHeaders = (id = randomUUID()) => ({
      ...fixture<Record<string, string>>('cloudevents', 'zot-binary-headers.json'),
      'Ce-Id': id,
      Authorization: `Bearer ${SECRETS.CE_HOOK_TOKEN}`,
    });

    const structured = async (m: Pushed) => {
      const event = fixture('cloudevents', 'zot-structured.json');
      event.id = randomUUID();
      event.time = new Date().toISOString();
      event.data = await zotData(m);
      return JSON.stringify(event);
    };

    it('mirrors binary-mode and structured-mode zotregistry.image.updated events; refuses forged ones', async () => {
      // Prepare
      const [binaryModule, structuredModule, forged] = await Promise.all([
        push('zot/basic-auth', '1.4.0', 'cloudevents binary'),
        push('zot/jwt-filter', '2.0.0', 'cloudevents structured', 'cncf-wasm'),
        push('zot/forged', '6.6.6', 'cloudevents forged'),
      ]);

      // Act / Assess: forged events are refused, and counted as such.
      const forgedBinary = JSON.stringify(await zotData(forged));
      const forgedStructured = await structured(forged);
      const structuredType = { 'Content-Type': 'application/cloudevents+json' };
      const before = await metrics();
      await expectRefused(
        HOOK,
        forgedBinary,
        { ...binaryHeaders(), Authorization: `Bearer ${SECRETS.CE_HOOK_TOKEN}x` },
        'binary, wrong bearer token',
      );
      const { Authorization: _, ...noAuth } = binaryHeaders();
      await expectRefused(HOOK, forgedBinary, noAuth, 'binary, no credentials');
      await expectRefused(
        HOOK,
        forgedBinary,
        { ...binaryHeaders(), Authorization: `Bearer ${SECRETS.HARBOR_HOOK_AUTH}` },
        "binary, another source's secret",
      );
      await expectRefused(
        HOOK,
        forgedStructured,
        { ...structuredType, Authorization: basic('zot', 'wrong-password') },
        'structured, Basic with the wrong password',
      );
      await expectRefused(HOOK, forgedStructured, structuredType, 'structured, no credentials');
      const afterForgeries = await metrics();
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', { source: 'ce', outcome: 'unauthenticated' }),
      ).toBe(counter(before, 'wasm_mirror_webhooks_total', { source: 'ce', outcome: 'unauthenticated' }) + 5);
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', { source: 'ce', outcome: 'accepted' }),
      ).toBe(counter(before, 'wasm_mirror_webhooks_total', { source: 'ce', outcome: 'accepted' }));

      // Act / Assess: binary mode, attributes in ce-* headers and the event data as the body.
      const binaryBody = JSON.stringify(await zotData(binaryModule));
      const binHeaders = binaryHeaders();
      const binary = await postJson(HOOK, binaryBody, binHeaders);
      expect(binary.status).toBe(202);
      expect(binary.body.accepted).toBe(1);
      // Structured mode, authenticated with Basic (the password is the secret).
      const structuredRes = await postJson(HOOK, await structured(structuredModule), {
        ...structuredType,
        Authorization: basic('zot', SECRETS.CE_HOOK_TOKEN),
      });
      expect(structuredRes.status).toBe(202);
      expect(structuredRes.body.accepted).toBe(1);

      // Assess
      const manifest = await expectMirrored(binaryModule, structuredModule);
      const byName = new Map(manifest.payload.modules.map((e) => [e.name, e]));
      expect(byName.get(name('zot/jwt-filter'))!.format).toBe('cncf-wasm');
      await expectNeverMirrored(forged);

      // Act / Assess: the same event (source + id) again is a replay.
      const settled = await metrics();
      const replay = await postJson(HOOK, binaryBody, binHeaders);
      expect(replay.status).toBe(200);
      expect(replay.body).toMatchObject({ duplicate: true, accepted: 0 });
      await queuesSettled();
      expect(counter(await metrics(), 'wasm_mirror_mirror_results_total', { source: 'ce' })).toBe(
        counter(settled, 'wasm_mirror_mirror_results_total', { source: 'ce' }),
      );
    });
  });

  describe('harbor (default format, configured auth header sent verbatim)', () => {
    const HOOK = '/hooks/harbor';

    const harborPush = (m: { repository: string; tag: string; digest: string }) => {
      const payload = fixture('harbor', m.tag === '' ? 'push-digest-only.json' : 'push-default.json');
      payload.occur_at = Math.floor(Date.now() / 1000);
      const data = payload.event_data as Json;
      const [namespace, ...rest] = m.repository.split('/');
      const repo = data.repository as Json;
      repo.namespace = namespace;
      repo.name = rest.join('/');
      repo.repo_full_name = m.repository;
      const ref = m.tag === '' ? `@${m.digest}` : `:${m.tag}`;
      // A digest pushed without a tag carries the digest in `tag`.
      data.resources = [
        {
          digest: m.digest,
          tag: m.tag === '' ? m.digest : m.tag,
          resource_url: `${registry.host}/${m.repository}${ref}`,
        },
      ];
      return JSON.stringify(payload);
    };

    it('mirrors a PUSH_ARTIFACT event, tagged and digest-only; refuses forged ones', async () => {
      // Prepare
      const [module, digestOnly, forged] = await Promise.all([
        push('harbor/basic-auth', '1.3.0', 'harbor tagged'),
        push('harbor/rate-limit', 'build-17', 'harbor digest only', 'compat-oci'),
        push('harbor/forged', '6.6.6', 'harbor forged'),
      ]);

      // Act / Assess: forged events are refused.
      const forgedBody = harborPush(forged);
      const before = await metrics();
      const json = { 'Content-Type': 'application/json', 'User-Agent': 'Harbor' };
      await expectRefused(
        HOOK,
        forgedBody,
        { ...json, Authorization: `${SECRETS.HARBOR_HOOK_AUTH}x` },
        'wrong secret',
      );
      await expectRefused(
        HOOK,
        forgedBody,
        { ...json, Authorization: 'Bearer not-the-secret' },
        'wrong bearer',
      );
      await expectRefused(HOOK, forgedBody, json, 'no credentials');
      await expectRefused(
        HOOK,
        forgedBody,
        { ...json, Authorization: basic('admin', SECRETS.HARBOR_HOOK_AUTH) },
        'secret wrapped in Basic',
      );
      const afterForgeries = await metrics();
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', {
          source: 'harbor',
          outcome: 'unauthenticated',
        }),
      ).toBe(
        counter(before, 'wasm_mirror_webhooks_total', { source: 'harbor', outcome: 'unauthenticated' }) + 4,
      );

      // Act / Assess: the genuine events, tagged and digest-only.
      const tagged = await postJson(HOOK, harborPush(module), {
        ...json,
        Authorization: SECRETS.HARBOR_HOOK_AUTH,
      });
      expect(tagged.status).toBe(202);
      expect(tagged.body.accepted).toBe(1);
      const untagged = await postJson(
        HOOK,
        harborPush({ repository: digestOnly.repository, tag: '', digest: digestOnly.digest }),
        { ...json, Authorization: SECRETS.HARBOR_HOOK_AUTH },
      );
      expect(untagged.status).toBe(202);
      expect(untagged.body.accepted).toBe(1);

      // Assess
      const manifest = await expectMirrored(module, { ...digestOnly, tag: '' });
      expect(manifest.payload.modules.find((e) => e.name === name(digestOnly.repository))!.format).toBe(
        'compat-image',
      );
      await expectNeverMirrored(forged);
    });
  });

  describe('quay and dockerhub (token in the URL path, tag resolved by the mirror)', () => {
    const quayPush = (repository: string, tags: string[]) => {
      const payload = fixture('quay', 'push.json');
      const [namespace, ...rest] = repository.split('/');
      payload.name = rest.join('/');
      payload.namespace = namespace;
      payload.repository = repository;
      payload.docker_url = `${registry.host}/${repository}`;
      payload.homepage = `http://${registry.host}/repository/${repository}`;
      payload.updated_tags = tags;
      return JSON.stringify(payload);
    };

    const hubPush = (repository: string, tag: string) => {
      const payload = fixture('dockerhub', 'push.json');
      const [namespace, ...rest] = repository.split('/');
      (payload.push_data as Json).tag = tag;
      (payload.push_data as Json).pushed_at = Math.floor(Date.now() / 1000);
      const repo = payload.repository as Json;
      repo.repo_name = repository;
      repo.name = rest.join('/');
      repo.namespace = namespace;
      repo.owner = namespace;
      return JSON.stringify(payload);
    };

    const json = { 'Content-Type': 'application/json' };

    it('quay: mirrors every updated tag; refuses a wrong or missing path token', async () => {
      // Prepare
      const [release, forged] = await Promise.all([
        push('quay/basic-auth', '1.5.0', 'quay release'),
        push('quay/forged', '6.6.6', 'quay forged'),
      ]);
      // The same bytes under a second tag: one module, two manifest entries.
      const { digest: latestDigest } = await pushWasm(
        registry.host,
        'quay/basic-auth:latest',
        release.bytes,
        'wasm-artifact',
      );
      expect(latestDigest).toBe(release.digest);

      // Act / Assess: forged deliveries are refused.
      const forgedBody = quayPush(forged.repository, [forged.tag]);
      const before = await metrics();
      await expectRefused(`/hooks/quay/${SECRETS.QUAY_HOOK_TOKEN}x`, forgedBody, json, 'wrong path token');
      await expectRefused(
        `/hooks/quay/${SECRETS.HUB_HOOK_TOKEN}`,
        forgedBody,
        json,
        "another source's token",
      );
      await expectRefused('/hooks/quay', forgedBody, json, 'no path token');
      await expectRefused(
        '/hooks/quay',
        forgedBody,
        { ...json, Authorization: `Bearer ${SECRETS.QUAY_HOOK_TOKEN}` },
        'the token in a header instead of the path',
      );
      const afterForgeries = await metrics();
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', { source: 'quay', outcome: 'unauthenticated' }),
      ).toBe(
        counter(before, 'wasm_mirror_webhooks_total', { source: 'quay', outcome: 'unauthenticated' }) + 4,
      );

      // Act / Assess: the genuine push, with both tags.
      const res = await postJson(
        `/hooks/quay/${SECRETS.QUAY_HOOK_TOKEN}`,
        quayPush(release.repository, ['1.5.0', 'latest']),
        json,
      );
      expect(res.status).toBe(202);
      expect(res.body.accepted).toBe(2);
      const manifest = await expectMirrored(release, { ...release, tag: 'latest' });
      expect(manifest.payload.modules.filter((e) => e.name === name(release.repository))).toHaveLength(2);
      await expectNeverMirrored(forged);
    });

    it('dockerhub: mirrors the pushed tag; refuses a wrong or missing path token', async () => {
      // Prepare
      const [module, forged] = await Promise.all([
        push('hub/basic-auth', '1.6.0', 'dockerhub push', 'compat-docker'),
        push('hub/forged', '6.6.6', 'dockerhub forged'),
      ]);

      // Act / Assess: forged deliveries are refused.
      const forgedBody = hubPush(forged.repository, forged.tag);
      const before = await metrics();
      await expectRefused(
        `/hooks/hub/${SECRETS.HUB_HOOK_TOKEN.slice(0, -1)}`,
        forgedBody,
        json,
        'truncated token',
      );
      await expectRefused(
        `/hooks/hub/${SECRETS.QUAY_HOOK_TOKEN}`,
        forgedBody,
        json,
        "another source's token",
      );
      await expectRefused('/hooks/hub', forgedBody, json, 'no path token');
      const afterForgeries = await metrics();
      expect(
        counter(afterForgeries, 'wasm_mirror_webhooks_total', { source: 'hub', outcome: 'unauthenticated' }),
      ).toBe(
        counter(before, 'wasm_mirror_webhooks_total', { source: 'hub', outcome: 'unauthenticated' }) + 3,
      );

      // Act / Assess: the genuine push.
      const res = await postJson(
        `/hooks/hub/${SECRETS.HUB_HOOK_TOKEN}`,
        hubPush(module.repository, module.tag),
        json,
      );
      expect(res.status).toBe(202);
      expect(res.body.accepted).toBe(1);
      const manifest = await expectMirrored(module);
      expect(manifest.payload.modules.find((e) => e.name === name(module.repository))!.format).toBe(
        'compat-image',
      );
      await expectNeverMirrored(forged);
    });
  });

  it('counts one stored module per genuine push and nothing for any forgery', async () => {
    // Act
    const text = await metrics();
    // Assess
    for (const [source, stored] of [
      ['github', 2],
      ['ce', 2],
      ['harbor', 2],
      ['quay', 1],
      ['hub', 1],
    ] as const) {
      expect(counter(text, 'wasm_mirror_mirror_results_total', { source, reason: 'mirrored' }), source).toBe(
        stored,
      );
    }
    const latest = await waitForManifest(mirror.url, () => true);
    expect(latest.payload.modules.some((e) => e.name.endsWith('/forged'))).toBe(false);
    expect(opensslVerifies(latest.envelope, publicKeyPem)).toBe(true);
  });
});
