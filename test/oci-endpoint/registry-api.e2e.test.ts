/**
 * The embedded mirror as a read-only registry, read by clients nobody here wrote: skopeo, and
 * the Debian `docker-registry` as a pull-through cache in front of the mirror. Every artifact
 * comes back with the upstream digest and bytes, and the module inside is the one the signed
 * manifest lists. What the signed manifest does not list is the spec's error, never bytes.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storageKeys } from '../../shared/core/storage-keys.ts';
import {
  type Harness,
  largeWasm,
  type PushFormat,
  proxyWasmModule,
  pushWasm,
  startHarness,
} from '../support/index.ts';
import { waitForManifest } from '../support/mirror.ts';
import {
  errorCode,
  moduleFromDir,
  type PullThroughCache,
  queueMirror,
  rawRequest,
  sha256Hex,
  skopeo,
  skopeoCopy,
  startPullThroughCache,
} from './support.ts';

interface Pushed {
  repository: string;
  format: PushFormat;
  module: Uint8Array;
  digest: string;
}

const PLUGINS: { repository: string; format: PushFormat }[] = [
  { repository: 'plugins/artifact', format: 'wasm-artifact' },
  { repository: 'plugins/compat', format: 'compat-oci' },
  { repository: 'plugins/docker', format: 'compat-docker' },
  { repository: 'plugins/indexed', format: 'index' },
];

describe('read-only registry API', () => {
  let harness: Harness;
  let mirrorHost: string;
  let work: string;
  const pushed = new Map<string, Pushed>();
  /** Pushed upstream after intake and never mirrored: no listed entry reaches it. */
  let unlisted: { digest: string; moduleDigest: string };

  const at = (repository: string) => pushed.get(repository)!;
  const get = (path: string, headers: Record<string, string> = {}) =>
    rawRequest(harness.mirror.url, 'GET', path, headers);

  beforeAll(async () => {
    harness = await startHarness({ mirrorName: 'oci-mesh' });
    mirrorHost = new URL(harness.mirror.url).host;
    work = mkdtempSync(join(tmpdir(), 'wm-oci-'));
    for (const { repository, format } of PLUGINS) {
      const module = proxyWasmModule({ marker: `oci ${format}` });
      const { digest } = await pushWasm(harness.registry.host, `${repository}:1.0`, module, format);
      pushed.set(repository, { repository, format, module, digest });
      await queueMirror(harness, repository, '1.0');
    }
    await waitForManifest(harness.mirror.url, (p) => p.modules.length === PLUGINS.length, 60_000);

    const other = proxyWasmModule({ marker: 'never mirrored' });
    const { digest } = await pushWasm(harness.registry.host, 'plugins/artifact:2.0', other, 'wasm-artifact');
    unlisted = { digest, moduleDigest: `sha256:${sha256Hex(other)}` };
  });

  afterAll(async () => {
    await harness?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  describe('intake', () => {
    it('keeps every manifest and blob upstream serves for a listed tag, byte for byte, under its digest', async () => {
      // Act / Assess
      for (const { repository, format } of PLUGINS) {
        const upstream = join(work, `upstream-${format}`);
        await skopeoCopy(harness.registry.host, `${repository}:1.0`, upstream);
        const files = readdirSync(upstream).filter((f) => /^[a-f0-9]{64}$/.test(f));
        expect(files.length).toBeGreaterThanOrEqual(2);
        for (const hex of files) {
          const kept = join(harness.dataDir, storageKeys.blob(hex));
          expect(readFileSync(kept).equals(readFileSync(join(upstream, hex))), `${format} ${hex}`).toBe(true);
        }
        const manifest = readFileSync(join(upstream, 'manifest.json'));
        expect(existsSync(join(harness.dataDir, storageKeys.blob(sha256Hex(manifest))))).toBe(true);
        // The reference's own manifest (the index, for an index) is kept too.
        expect(existsSync(join(harness.dataDir, storageKeys.blob(at(repository).digest.slice(7))))).toBe(
          true,
        );
      }
    });

    it('writes what a listed digest reaches in one small note, and nothing for what it did not mirror', async () => {
      // Act
      const name = `${harness.registry.host}/plugins/indexed`;
      const note = JSON.parse(
        readFileSync(
          join(harness.dataDir, storageKeys.digestNote('oci', name, at('plugins/indexed').digest)),
          'utf8',
        ),
      ) as { content: { digest: string; manifest: boolean }[] };
      // Assess
      expect(note.content[0]).toMatchObject({ digest: at('plugins/indexed').digest, manifest: true });
      expect(note.content.filter((c) => c.manifest)).toHaveLength(2);
      expect(existsSync(join(harness.dataDir, storageKeys.blob(unlisted.digest.slice(7))))).toBe(false);
    });
  });

  describe('skopeo', () => {
    it('answers /v2/ as a registry', async () => {
      // Act / Assess
      for (const method of ['GET', 'HEAD']) {
        const res = await rawRequest(harness.mirror.url, method, '/v2/');
        expect(res.status).toBe(200);
        expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
        if (method === 'GET') expect(JSON.parse(res.body.toString('utf8'))).toEqual({});
      }
    });

    it.each(PLUGINS)(
      'inspects $format with the upstream digest and bytes',
      async ({ repository, format }) => {
        // Prepare
        const ref = `docker://${mirrorHost}/local/${repository}:1.0`;
        // Act / Assess
        const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', ref]);
        expect(`sha256:${sha256Hex(raw)}`).toBe(at(repository).digest);
        const upstreamRaw = await skopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${harness.registry.host}/${repository}:1.0`,
        ]);
        expect(raw).toBe(upstreamRaw);
        // skopeo inspects images only; a Wasm artifact's config is refused, upstream as here.
        const inspect = (host: string, path: string) =>
          skopeo(['inspect', '--tls-verify=false', `docker://${host}/${path}:1.0`]).then(
            (out) => JSON.parse(out) as { Digest: string; Name: string },
            (err: Error) => err.message.replace(/^.*level=fatal /s, '').replaceAll(host, '<host>'),
          );
        const [here, there] = await Promise.all([
          inspect(mirrorHost, `local/${repository}`),
          inspect(harness.registry.host, repository),
        ]);
        if (typeof there === 'string') {
          expect(format === 'wasm-artifact' || format === 'index').toBe(true);
          expect(here).toEqual(there.replaceAll(repository, `local/${repository}`));
        } else {
          expect(here).toMatchObject({
            Digest: at(repository).digest,
            Name: `${mirrorHost}/local/${repository}`,
          });
          expect(there.Digest).toBe(at(repository).digest);
        }
      },
    );

    it.each(PLUGINS)(
      'copies $format byte-identical to upstream, and its module is the listed sha256',
      async ({ repository, format }) => {
        // Prepare
        const fromMirror = join(work, `mirror-${format}`);
        const fromUpstream = join(work, `direct-${format}`);
        // Act
        await skopeoCopy(mirrorHost, `local/${repository}:1.0`, fromMirror);
        await skopeoCopy(harness.registry.host, `${repository}:1.0`, fromUpstream);
        // Assess
        const names = readdirSync(fromUpstream).sort();
        expect(readdirSync(fromMirror).sort()).toEqual(names);
        for (const f of names) {
          expect(readFileSync(join(fromMirror, f)).equals(readFileSync(join(fromUpstream, f))), f).toBe(true);
        }
        const listed = (await waitForManifest(harness.mirror.url, () => true)).payload.modules.find(
          (m) => m.name === `${harness.registry.host}/${repository}`,
        )!;
        const module = moduleFromDir(fromMirror);
        expect(sha256Hex(module)).toBe(listed.sha256);
        expect(Buffer.from(module).equals(Buffer.from(at(repository).module))).toBe(true);
      },
    );

    it('finds no tag the signed manifest does not list, though upstream has it', async () => {
      // Act / Assess
      await expect(
        skopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${mirrorHost}/local/plugins/artifact:2.0`,
        ]),
      ).rejects.toThrow(/manifest unknown/i);
      const tags = JSON.parse(
        await skopeo(['list-tags', '--tls-verify=false', `docker://${mirrorHost}/local/plugins/artifact`]),
      ) as { Tags: string[] };
      expect(tags.Tags).toEqual(['1.0']);
    });
  });

  describe('a CNCF Distribution pull-through cache in front of the mirror', () => {
    let cache: PullThroughCache;
    beforeAll(async () => {
      cache = await startPullThroughCache(harness.mirror.url);
    });
    afterAll(() => cache?.stop());

    it.each(PLUGINS)(
      'serves $format to skopeo with the upstream digest and module',
      async ({ repository, format }) => {
        // Prepare
        const dir = join(work, `cache-${format}`);
        // Act
        await skopeoCopy(cache.host, `local/${repository}:1.0`, dir);
        const raw = await skopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${cache.host}/local/${repository}:1.0`,
        ]);
        // Assess
        expect(`sha256:${sha256Hex(raw)}`).toBe(at(repository).digest);
        expect(Buffer.from(moduleFromDir(dir)).equals(Buffer.from(at(repository).module))).toBe(true);
      },
    );

    it("passes on the mirror's refusal of an unlisted tag", async () => {
      await expect(
        skopeo([
          'inspect',
          '--raw',
          '--tls-verify=false',
          `docker://${cache.host}/local/plugins/artifact:2.0`,
        ]),
      ).rejects.toThrow(/manifest unknown/i);
    });
  });

  describe('headers', () => {
    it('sends a manifest with its digest, stored media type and the API version, by tag and by digest', async () => {
      // Prepare
      const { digest } = at('plugins/compat');
      // Act / Assess
      for (const ref of ['1.0', digest]) {
        for (const method of ['GET', 'HEAD']) {
          const res = await rawRequest(
            harness.mirror.url,
            method,
            `/v2/local/plugins/compat/manifests/${ref}`,
          );
          expect(res.status).toBe(200);
          expect(res.headers['docker-content-digest']).toBe(digest);
          expect(res.headers['content-type']).toBe('application/vnd.oci.image.manifest.v1+json');
          expect(res.headers['docker-distribution-api-version']).toBe('registry/2.0');
          if (method === 'GET') expect(`sha256:${sha256Hex(res.body)}`).toBe(digest);
        }
      }
      const docker = await get(`/v2/local/plugins/docker/manifests/1.0`);
      expect(docker.headers['content-type']).toBe('application/vnd.docker.distribution.manifest.v2+json');
      const index = await get(`/v2/local/plugins/indexed/manifests/1.0`);
      expect(index.headers['content-type']).toBe('application/vnd.oci.image.index.v1+json');
    });

    it('serves byte ranges of a blob (206), and its length on HEAD', async () => {
      // Prepare
      const { module } = at('plugins/artifact');
      const digest = `sha256:${sha256Hex(module)}`;
      const path = `/v2/local/plugins/artifact/blobs/${digest}`;
      // Act / Assess
      const part = await get(path, { range: 'bytes=4-11' });
      expect(part.status).toBe(206);
      expect(part.headers['content-range']).toBe(`bytes 4-11/${module.length}`);
      expect(part.body.equals(Buffer.from(module.subarray(4, 12)))).toBe(true);
      const head = await rawRequest(harness.mirror.url, 'HEAD', path);
      expect(head.status).toBe(200);
      expect(head.headers['content-length']).toBe(String(module.length));
      expect(head.headers['docker-content-digest']).toBe(digest);
      const beyond = await get(path, { range: `bytes=${module.length}-` });
      expect(beyond.status).toBe(416);
    });

    it('streams a layer of several MiB whole and in ranges across chunk boundaries, and survives a client that leaves', async () => {
      // Prepare
      const module = largeWasm(3 * 1024 * 1024 + 123);
      await pushWasm(harness.registry.host, 'plugins/large:1.0', module, 'wasm-artifact');
      await queueMirror(harness, 'plugins/large', '1.0');
      await waitForManifest(
        harness.mirror.url,
        (p) => p.modules.some((m) => m.name.endsWith('/plugins/large')),
        60_000,
      );
      const path = `/v2/local/plugins/large/blobs/sha256:${sha256Hex(module)}`;
      // Act / Assess
      const whole = await get(path);
      expect(whole.status).toBe(200);
      expect(sha256Hex(whole.body)).toBe(sha256Hex(module));
      for (const [a, b] of [
        [1048570, 1048590],
        [0, 2097152],
        [3 * 1024 * 1024, module.length - 1],
      ] as const) {
        const part = await get(path, { range: `bytes=${a}-${b}` });
        expect(part.status).toBe(206);
        expect(part.body.equals(Buffer.from(module.subarray(a, b + 1))), `${a}-${b}`).toBe(true);
      }
      // A client that hangs up after the first bytes.
      await new Promise<void>((resolve, reject) => {
        const url = new URL(harness.mirror.url);
        const req = request({ host: url.hostname, port: url.port, path }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', (err) => (req.destroyed ? resolve() : reject(err)));
        req.end();
      });
      expect(sha256Hex((await get(path)).body)).toBe(sha256Hex(module));
    });

    it('pages tags with n and last, pointing at the next page with a Link header', async () => {
      // Prepare
      await pushWasm(harness.registry.host, 'plugins/compat:1.1', at('plugins/compat').module, 'compat-oci');
      await pushWasm(harness.registry.host, 'plugins/compat:1.2', at('plugins/compat').module, 'compat-oci');
      await queueMirror(harness, 'plugins/compat', '1.1');
      await queueMirror(harness, 'plugins/compat', '1.2');
      await waitForManifest(harness.mirror.url, (p) => p.modules.length === PLUGINS.length + 3, 60_000);
      // Act / Assess
      const all = await get('/v2/local/plugins/compat/tags/list');
      expect(JSON.parse(all.body.toString('utf8'))).toEqual({
        name: 'local/plugins/compat',
        tags: ['1.0', '1.1', '1.2'],
      });
      const first = await get('/v2/local/plugins/compat/tags/list?n=2');
      expect(JSON.parse(first.body.toString('utf8')).tags).toEqual(['1.0', '1.1']);
      expect(first.headers.link).toBe('</v2/local/plugins/compat/tags/list?n=2&last=1.1>; rel="next"');
      const second = await get('/v2/local/plugins/compat/tags/list?n=2&last=1.1');
      expect(JSON.parse(second.body.toString('utf8')).tags).toEqual(['1.2']);
      expect(second.headers.link).toBeUndefined();
    });
  });

  describe("refusals: the spec's error, never bytes", () => {
    const refused = async (path: string, status: number, code: string, method = 'GET'): Promise<void> => {
      const res = await rawRequest(harness.mirror.url, method, path);
      expect({ path, status: res.status }).toEqual({ path, status });
      expect(res.headers['content-type']).toMatch(/^application\/json/);
      expect(res.headers['docker-content-digest']).toBeUndefined();
      if (method !== 'HEAD') expect(errorCode(res), path).toBe(code);
    };

    it('a tag the signed manifest does not list, though upstream has it', async () => {
      await refused('/v2/local/plugins/artifact/manifests/2.0', 404, 'MANIFEST_UNKNOWN');
      await refused('/v2/local/plugins/artifact/manifests/2.0', 404, 'MANIFEST_UNKNOWN', 'HEAD');
    });

    it('a tag moved upstream after intake still resolves to the listed digest', async () => {
      // Prepare: the tag moves upstream.
      const moved = proxyWasmModule({ marker: 'moved upstream' });
      await pushWasm(harness.registry.host, 'plugins/docker:1.0', moved, 'compat-docker');
      // Act
      const res = await get('/v2/local/plugins/docker/manifests/1.0');
      // Assess
      expect(res.headers['docker-content-digest']).toBe(at('plugins/docker').digest);
    });

    it('a digest no listed entry reaches', async () => {
      // Act / Assess
      await refused(`/v2/local/plugins/artifact/manifests/${unlisted.digest}`, 404, 'MANIFEST_UNKNOWN');
      await refused(`/v2/local/plugins/artifact/blobs/${unlisted.moduleDigest}`, 404, 'BLOB_UNKNOWN');
      // Reached by another repository's entry only.
      const elsewhere = `sha256:${sha256Hex(at('plugins/artifact').module)}`;
      await refused(`/v2/local/plugins/compat/blobs/${elsewhere}`, 404, 'BLOB_UNKNOWN');
      // A layer is a blob, not a manifest.
      await refused(`/v2/local/plugins/artifact/manifests/${elsewhere}`, 404, 'MANIFEST_UNKNOWN');
      await refused(`/v2/local/plugins/artifact/blobs/sha512:${'a'.repeat(128)}`, 404, 'BLOB_UNKNOWN');
      await refused('/v2/local/plugins/artifact/blobs/sha256:nothex', 400, 'DIGEST_INVALID');
    });

    it('names no source or allow-list serves', async () => {
      // Act / Assess
      await refused('/v2/nosuch/plugins/artifact/manifests/1.0', 404, 'NAME_UNKNOWN');
      await refused('/v2/local/other/artifact/tags/list', 404, 'NAME_UNKNOWN');
      await refused('/v2/local/plugins/never/tags/list', 404, 'NAME_UNKNOWN');
      await refused('/v2/local/Plugins/artifact/manifests/1.0', 400, 'NAME_INVALID');
    });

    it('dot segments and percent-encoding, wherever they are', async () => {
      // Prepare
      const digest = at('plugins/artifact').digest;
      // Act / Assess
      for (const path of [
        '/v2/../keys.json',
        '/v2/local/../local/plugins/artifact/manifests/1.0',
        '/v2/local/plugins/artifact/../artifact/manifests/1.0',
        '/v2/local/plugins/./artifact/manifests/1.0',
        '/v2/local/plugins/artifact/manifests/..',
        `/v2/local/plugins/artifact/blobs/../manifests/${digest}`,
        '/v2/local/plugins%2Fartifact/manifests/1.0',
        '/v2/local%2Fplugins%2Fartifact/manifests/1.0',
        '/v2/local/plugins/artifact/manifests/1.0%2F..',
        '/v2/%2e%2e/keys.json',
        '/v2/local/plugins/%2e%2e/plugins/artifact/manifests/1.0',
        '/v2/local//plugins/artifact/manifests/1.0',
        '/v2/local/plugins\\artifact/manifests/1.0',
      ]) {
        await refused(path, 400, 'NAME_INVALID');
      }
      // Absolute-form targets are read the same way.
      await refused(`http://${mirrorHost}/v2/../keys.json`, 400, 'NAME_INVALID');
    });

    it('every write method, on every /v2/ path', async () => {
      // Act / Assess
      for (const method of ['PUT', 'POST', 'PATCH', 'DELETE']) {
        for (const path of [
          '/v2/',
          '/v2/local/plugins/artifact/manifests/1.0',
          '/v2/local/plugins/artifact/blobs/uploads/',
          `/v2/local/plugins/artifact/blobs/${at('plugins/artifact').digest}`,
        ]) {
          const res = await rawRequest(harness.mirror.url, method, path);
          expect({ method, path, status: res.status }).toEqual({ method, path, status: 405 });
          expect(res.headers.allow).toBe('GET, HEAD');
          expect(errorCode(res)).toBe('UNSUPPORTED');
        }
      }
    });

    it('endpoints it does not have', async () => {
      await refused('/v2/_catalog', 404, 'UNSUPPORTED');
      await refused('/v2/local/plugins/artifact', 404, 'UNSUPPORTED');
    });
  });
});
