/**
 * The OCI client against a scripted registry: throttling, outages, broken bodies, wrong digests,
 * redirects and hostile auth challenges. Every failure asserts its exact error code.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';
import {
  RegistryClient,
  type RegistryClientOptions,
  type RepositoryTarget,
} from '../../shared/core/oci/client.ts';
import type { RegistryTarget } from '../../shared/core/ports.ts';
import { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import {
  type FakeRegistry,
  MEDIA,
  proxyWasmModule,
  sha256Digest,
  startFakeRegistry,
} from '../support/index.ts';

const module = proxyWasmModule({ marker: 'fake-registry' });
const fast: RegistryClientOptions = { retry: { baseDelayMs: 5, maxDelayMs: 20, budgetMs: 5_000 } };

let fake: FakeRegistry;
let other: FakeRegistry | undefined;
let dir: string;

beforeEach(async () => {
  fake = await startFakeRegistry();
  dir = mkdtempSync(join(tmpdir(), 'wm-client-'));
});
afterEach(async () => {
  await fake.stop();
  await other?.stop();
  other = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function target(reference = 'v1', repository = 'plugins/x'): RegistryTarget {
  return { registry: fake.host, repository, reference, insecure: true };
}

function repo(): RepositoryTarget {
  return { registry: fake.host, repository: 'plugins/x', insecure: true };
}

function putArtifact(bytes: Uint8Array = module, layerOverrides: { size?: number; digest?: string } = {}) {
  return fake.putImage('plugins/x', 'v1', {
    config: { mediaType: MEDIA.wasmArtifactConfig, bytes: new TextEncoder().encode('{}') },
    layers: [{ mediaType: MEDIA.wasmArtifactLayer, bytes, ...layerOverrides }],
  });
}

async function expectCode(promise: Promise<unknown>, code: ErrorCode): Promise<WasmMirrorError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WasmMirrorError);
  expect((err as WasmMirrorError).code).toBe(code);
  return err as WasmMirrorError;
}

function pull(options: RegistryClientOptions = fast, ref = 'v1') {
  return new OciWasmPuller(options).pullToFile(target(ref), join(dir, 'out.wasm'));
}

const blobPath = (digest: string) => `/v2/plugins/x/blobs/${digest}`;
const isBlob = (path: string | undefined) => path?.includes('/blobs/') === true;
const isManifest = (path: string | undefined) => path?.includes('/manifests/') === true;

function noFilesLeft() {
  expect(readdirSync(dir)).toEqual([]);
}

describe('retries', () => {
  it('honours Retry-After on 429 and then succeeds', async () => {
    // Prepare
    putArtifact();
    let throttled = 0;
    fake.script((req, res) => {
      if (isManifest(req.url) && throttled++ === 0) {
        res.writeHead(429, { 'retry-after': '1' }).end();
        return true;
      }
    });
    // Act
    const started = Date.now();
    const pulled = await pull();
    // Assess
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(pulled.sha256).toBe(sha256Digest(module).slice(7));
    expect(fake.requests.filter((r) => isManifest(r.path))).toHaveLength(2);
  });

  it('fails at once with TOO_MANY_REQUESTS when Retry-After exceeds the budget', async () => {
    // Prepare
    putArtifact();
    fake.script((_req, res) => {
      res.writeHead(429, { 'retry-after': '3600' }).end();
      return true;
    });
    // Act / Assess
    const started = Date.now();
    const err = await expectCode(pull(), 'TOO_MANY_REQUESTS');
    expect(err.retryable).toBe(true);
    expect(err.retryAfterSeconds).toBe(3600);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(fake.requests).toHaveLength(1);
  });

  it('retries 5xx and then succeeds', async () => {
    // Prepare
    putArtifact();
    let failures = 0;
    fake.script((req, res) => {
      if (isBlob(req.url) && failures++ < 2) {
        res.writeHead(failures === 1 ? 503 : 502).end('down');
        return true;
      }
    });
    // Act
    const pulled = await pull();
    // Assess
    expect(pulled.size).toBe(module.length);
    expect(fake.requests.filter((r) => isBlob(r.path))).toHaveLength(3);
  });

  it('gives up with REGISTRY_UNAVAILABLE after the attempt limit', async () => {
    // Prepare
    putArtifact();
    fake.script((_req, res) => {
      res.writeHead(500).end();
      return true;
    });
    // Act / Assess
    const err = await expectCode(pull({ retry: { ...fast.retry, maxAttempts: 3 } }), 'REGISTRY_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    expect(fake.requests).toHaveLength(3);
    noFilesLeft();
  });

  it('answers REGISTRY_UNAVAILABLE when nothing listens', async () => {
    // Prepare
    const host = fake.host;
    await fake.stop();
    const puller = new OciWasmPuller({ retry: { ...fast.retry, maxAttempts: 2 } });
    // Act / Assess
    await expectCode(
      puller.pullToFile(
        { registry: host, repository: 'a', reference: 'v1', insecure: true },
        join(dir, 'o.wasm'),
      ),
      'REGISTRY_UNAVAILABLE',
    );
    fake = await startFakeRegistry();
  });
});

describe('timeouts', () => {
  it('times out waiting for headers', async () => {
    // Prepare
    putArtifact();
    fake.script(() => true); // never answers
    // Act / Assess
    await expectCode(pull({ headersTimeoutMs: 200, retry: { maxAttempts: 1 } }), 'TIMEOUT');
  });

  it('times out on an idle body', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (isBlob(req.url)) {
        res.writeHead(200, { 'content-length': String(module.length) });
        res.write(module.subarray(0, 10)); // and then nothing
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull({ idleTimeoutMs: 300, retry: { maxAttempts: 1 } }), 'TIMEOUT');
    // The manifest was served and the stall happened on the blob body, once (no retry).
    expect(fake.requests.filter((r) => isManifest(r.path))).toHaveLength(1);
    expect(fake.requests.filter((r) => isBlob(r.path))).toHaveLength(1);
    noFilesLeft();
  });
  it('bounds a trickling body by the request timeout', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (!isBlob(req.url)) return;
      res.writeHead(200, { 'content-length': String(module.length) });
      let sent = 0;
      const timer = setInterval(() => {
        if (res.destroyed || sent >= module.length) return clearInterval(timer);
        res.write(module.subarray(sent, sent + 1));
        sent++;
      }, 50);
      return true;
    });
    // Act / Assess
    await expectCode(
      pull({ idleTimeoutMs: 1000, requestTimeoutMs: 600, retry: { maxAttempts: 1 } }),
      'TIMEOUT',
    );
    noFilesLeft();
  });
});

describe('blob bodies', () => {
  it('refuses a blob whose Content-Length differs from its descriptor', async () => {
    // Prepare
    putArtifact(module, { size: module.length - 1 });
    // Act / Assess
    await expectCode(pull(), 'LENGTH_MISMATCH');
    noFilesLeft();
  });

  it('refuses an overlong chunked body (LENGTH_MISMATCH)', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (isBlob(req.url)) {
        res.writeHead(200, { 'transfer-encoding': 'chunked' });
        res.end(Buffer.concat([module, Buffer.alloc(100)]));
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(), 'LENGTH_MISMATCH');
    noFilesLeft();
  });

  it('refuses a short chunked body (LENGTH_MISMATCH)', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (isBlob(req.url)) {
        res.writeHead(200, { 'transfer-encoding': 'chunked' });
        res.end(module.subarray(0, module.length - 5));
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(), 'LENGTH_MISMATCH');
    noFilesLeft();
  });

  it('treats a connection cut mid-body as REGISTRY_UNAVAILABLE (retryable)', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (isBlob(req.url)) {
        res.writeHead(200, { 'content-length': String(module.length) });
        res.write(module.subarray(0, 20), () => res.destroy());
        return true;
      }
    });
    // Act / Assess
    const err = await expectCode(pull(), 'REGISTRY_UNAVAILABLE');
    expect(err.retryable).toBe(true);
    noFilesLeft();
  });

  it('stops an endless body at the descriptor size (LENGTH_MISMATCH)', async () => {
    // Prepare
    putArtifact();
    let written = 0;
    fake.script((req, res) => {
      if (!isBlob(req.url)) return;
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      const chunk = Buffer.concat([module, Buffer.alloc(64 * 1024)]);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) written += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
      return true;
    });
    // Act / Assess
    await expectCode(pull(), 'LENGTH_MISMATCH');
    expect(written).toBeLessThan(64 * 1024 * 1024);
    noFilesLeft();
  });

  it('refuses a blob with the wrong digest (DIGEST_MISMATCH)', async () => {
    // Prepare
    const tampered = Uint8Array.from(module);
    tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 0xff;
    putArtifact(module, { digest: sha256Digest(tampered) });
    // The registry serves the original bytes under the tampered descriptor's digest.
    fake.putBlob(module);
    fake.script((req, res) => {
      if (req.url === blobPath(sha256Digest(tampered))) {
        res.writeHead(200, { 'content-length': String(module.length) }).end(module);
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(), 'DIGEST_MISMATCH');
    noFilesLeft();
  });

  it('refuses a module layer over the size cap before downloading it (SIZE_EXCEEDED)', async () => {
    // Prepare
    putArtifact();
    const puller = new OciWasmPuller({ ...fast, maxModuleBytes: 100 });
    // Act / Assess
    await expectCode(puller.pullToFile(target(), join(dir, 'o.wasm')), 'SIZE_EXCEEDED');
    expect(fake.requests.filter((r) => isBlob(r.path))).toHaveLength(0);
    noFilesLeft();
  });
});

describe('manifests', () => {
  it('refuses a manifest whose Docker-Content-Digest differs (DIGEST_MISMATCH)', async () => {
    // Prepare
    const { manifest } = putArtifact();
    fake.script((req, res) => {
      if (isManifest(req.url)) {
        res.writeHead(200, {
          'content-type': MEDIA.ociManifest,
          'docker-content-digest': sha256Digest(new Uint8Array([1])),
        });
        res.end(manifest);
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(), 'DIGEST_MISMATCH');
  });

  it('refuses a manifest fetched by digest whose bytes hash differently (DIGEST_MISMATCH)', async () => {
    // Prepare
    const { digest } = putArtifact();
    fake.script((req, res) => {
      if (isManifest(req.url)) {
        res.writeHead(200, { 'content-type': MEDIA.ociManifest }).end('{"schemaVersion":2,"layers":[]}');
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(fast, digest), 'DIGEST_MISMATCH');
  });

  it('refuses a manifest over 4 MiB by Content-Length (SIZE_EXCEEDED)', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (isManifest(req.url)) {
        res.writeHead(200, { 'content-type': MEDIA.ociManifest, 'content-length': String(5 * 1024 * 1024) });
        res.write(Buffer.alloc(1024, 0x20));
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(), 'SIZE_EXCEEDED');
  });

  it('refuses an endless chunked manifest at 4 MiB (SIZE_EXCEEDED)', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (!isManifest(req.url)) return;
      res.writeHead(200, { 'content-type': MEDIA.ociManifest, 'transfer-encoding': 'chunked' });
      res.write('{"schemaVersion":2,"x":"');
      const chunk = Buffer.alloc(256 * 1024, 0x61);
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) {}
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
      return true;
    });
    // Act / Assess
    await expectCode(pull(), 'SIZE_EXCEEDED');
  });

  it('refuses an unknown manifest media type (UNSUPPORTED_MEDIA_TYPE)', async () => {
    // Prepare
    fake.putManifest(
      'plugins/x',
      ['v1'],
      new TextEncoder().encode('{"schemaVersion":1,"name":"plugins/x","fsLayers":[]}'),
      'application/vnd.docker.distribution.manifest.v1+prettyjws',
    );
    // Act / Assess
    await expectCode(pull(), 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('answers DENIED for 403', async () => {
    // Prepare
    putArtifact();
    fake.script((_req, res) => {
      res
        .writeHead(403, { 'content-type': 'application/json' })
        .end('{"errors":[{"code":"DENIED","message":"no"}]}');
      return true;
    });
    // Act / Assess
    await expectCode(pull(), 'DENIED');
  });

  it('answers MANIFEST_UNKNOWN and BLOB_UNKNOWN for 404s', async () => {
    // Act / Assess: no manifest.
    await expectCode(pull(), 'MANIFEST_UNKNOWN');
    // Prepare: a manifest whose layer is not there.
    fake.putImage('plugins/x', 'v1', {
      config: { mediaType: MEDIA.wasmArtifactConfig, bytes: new TextEncoder().encode('{}') },
      layers: [
        { mediaType: MEDIA.wasmArtifactLayer, bytes: module, digest: sha256Digest(new Uint8Array([9])) },
      ],
    });
    // Act / Assess
    await expectCode(pull(), 'BLOB_UNKNOWN');
  });

  it('resolves a digest by HEAD and lists tags across pages', async () => {
    // Prepare
    const { digest } = putArtifact();
    fake.putManifest('plugins/x', ['v2', 'v3'], new TextEncoder().encode('{}'), MEDIA.ociManifest);
    const client = new RegistryClient(fast);
    // Act / Assess: the digest, by HEAD.
    expect(await client.resolveDigest(repo(), 'v1')).toBe(digest);
    expect(fake.requests.at(-1)?.method).toBe('HEAD');
    // Prepare: tags over two pages.
    fake.script((req, res) => {
      if (req.url === '/v2/plugins/x/tags/list?n=1000') {
        res
          .writeHead(200, { link: '</v2/plugins/x/tags/list?n=1000&last=b>; rel="next"' })
          .end('{"tags":["a","b"]}');
        return true;
      }
      if (req.url === '/v2/plugins/x/tags/list?n=1000&last=b') {
        res.writeHead(200).end('{"tags":["c"]}');
        return true;
      }
    });
    // Act / Assess
    expect(await client.listTags(repo())).toEqual(['a', 'b', 'c']);
  });
});

describe('auth', () => {
  /** Scripts Bearer auth on `fake`, issuing `token` from a realm served by the same listener. */
  function requireBearer(
    opts: { realm?: string; tokenField?: 'token' | 'access_token'; expiresIn?: number } = {},
  ) {
    const issued: string[] = [];
    fake.script((req, res, f) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/token') {
        const token = `t${issued.length}`;
        issued.push(req.headers.authorization ?? '');
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ [opts.tokenField ?? 'token']: token, expires_in: opts.expiresIn ?? 300 }));
        return true;
      }
      if (!/^Bearer t\d+$/.test(req.headers.authorization ?? '')) {
        const realm = opts.realm ?? `${f.url}/token`;
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="${realm}",service="fake",scope="repository:plugins/x:pull"`,
        });
        res.end();
        return true;
      }
    });
    return issued;
  }

  it('gets a Bearer token (access_token field), with credentials, and caches it', async () => {
    // Prepare
    putArtifact();
    const issued = requireBearer({ tokenField: 'access_token' });
    const puller = new OciWasmPuller(fast);
    const t = { ...target(), credentials: { username: 'u', password: 'p' } };
    // Act
    await puller.pullToFile(t, join(dir, 'a.wasm'));
    await puller.pullToFile(t, join(dir, 'b.wasm'));
    // Assess
    expect(issued).toEqual([`Basic ${Buffer.from('u:p').toString('base64')}`]);
    const tokenRequest = fake.requests.find((r) => r.path.startsWith('/token'))!;
    expect(new URL(tokenRequest.path, 'http://x').searchParams.get('scope')).toBe(
      'repository:plugins/x:pull',
    );
    expect(new URL(tokenRequest.path, 'http://x').searchParams.get('service')).toBe('fake');
  });

  it('refreshes an expired token once', async () => {
    // Prepare
    putArtifact();
    const issued = requireBearer({ expiresIn: 1 });
    let now = Date.now();
    const puller = new OciWasmPuller({ ...fast, now: () => now });
    // Act
    await puller.pullToFile(target(), join(dir, 'a.wasm'));
    now += 120_000;
    await puller.pullToFile(target(), join(dir, 'b.wasm'));
    // Assess
    expect(issued).toHaveLength(2);
  });

  it('gives up with UNAUTHORIZED after one retry on 401', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(200).end('{"token":"useless"}');
        return true;
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${fake.url}/token",service="fake"` }).end();
      return true;
    });
    // Act / Assess
    await expectCode(pull(), 'UNAUTHORIZED');
    expect(fake.requests.filter((r) => isManifest(r.path))).toHaveLength(2);
  });

  it('refuses a token realm on a metadata address before connecting (FORBIDDEN_ADDRESS)', async () => {
    // Prepare
    putArtifact();
    const seen: string[] = [];
    const spy: typeof fetch = (input, init) => {
      seen.push(String(input));
      return fetch(input, init);
    };
    // Act / Assess
    for (const realm of ['http://169.254.169.254/latest/api/token', 'http://[fd00:ec2::254]/token']) {
      requireBearer({ realm });
      const before = seen.length;
      await expectCode(pull({ ...fast, fetch: spy }), 'FORBIDDEN_ADDRESS');
      // The challenge itself came through the spy, so the spy saw every request of this pull.
      expect(seen.length).toBeGreaterThan(before);
    }
    expect(seen.filter((u) => !u.startsWith(fake.url))).toEqual([]);
  });

  it('answers UNAUTHORIZED when the token server refuses the credentials', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (req.url?.startsWith('/token')) {
        res.writeHead(401).end();
        return true;
      }
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${fake.url}/token"` }).end();
      return true;
    });
    // Act / Assess
    await expectCode(pull(), 'UNAUTHORIZED');
  });
});

describe('redirects', () => {
  it('follows a blob redirect to another host without forwarding Authorization', async () => {
    // Prepare
    other = await startFakeRegistry({ hostname: '127.0.0.2' });
    putArtifact();
    const layerDigest = sha256Digest(module);
    other.script((req, res) => {
      if (req.url === '/storage/blob') {
        res.writeHead(200, { 'content-length': String(module.length) }).end(module);
        return true;
      }
    });
    fake.script((req, res) => {
      if (req.headers.authorization !== `Basic ${Buffer.from('u:p').toString('base64')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return true;
      }
      if (req.url === blobPath(layerDigest)) {
        res.writeHead(307, { location: `${other!.url}/storage/blob` }).end();
        return true;
      }
    });
    // Act
    const dest = join(dir, 'r.wasm');
    const pulled = await new OciWasmPuller(fast).pullToFile(
      { ...target(), credentials: { username: 'u', password: 'p' } },
      dest,
    );
    // Assess
    expect(pulled.sha256).toBe(createHash('sha256').update(module).digest('hex'));
    expect(other.requests).toHaveLength(1);
    expect(other.requests[0]?.headers.authorization).toBeUndefined();
    expect(
      fake.requests.some((r) => r.path === blobPath(layerDigest) && r.headers.authorization !== undefined),
    ).toBe(true);
  });

  it('keeps Authorization on a same-origin redirect', async () => {
    // Prepare
    putArtifact();
    const layerDigest = sha256Digest(module);
    fake.script((req, res) => {
      if (req.headers.authorization === undefined) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return true;
      }
      if (req.url === blobPath(layerDigest)) {
        res.writeHead(302, { location: '/moved/blob' }).end();
        return true;
      }
      if (req.url === '/moved/blob') {
        res.writeHead(200).end(module);
        return true;
      }
    });
    // Act
    await new OciWasmPuller(fast).pullToFile(
      { ...target(), credentials: { username: 'u', password: 'p' } },
      join(dir, 's.wasm'),
    );
    // Assess
    expect(fake.requests.find((r) => r.path === '/moved/blob')?.headers.authorization).toBe(
      `Basic ${Buffer.from('u:p').toString('base64')}`,
    );
  });

  it('refuses a redirect to a metadata address before connecting (FORBIDDEN_ADDRESS)', async () => {
    // Prepare
    putArtifact();
    const seen: string[] = [];
    const spy: typeof fetch = (input, init) => {
      seen.push(String(input));
      return fetch(input, init);
    };
    fake.script((req, res) => {
      if (isBlob(req.url)) {
        res
          .writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/iam/security-credentials/' })
          .end();
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull({ ...fast, fetch: spy }), 'FORBIDDEN_ADDRESS');
    // The redirecting blob request went through the spy; the redirect target never did.
    expect(seen.some((u) => u.includes('/blobs/'))).toBe(true);
    expect(seen.filter((u) => u.includes('169.254'))).toEqual([]);
    noFilesLeft();
  });

  it('stops redirect loops (REGISTRY_PROTOCOL)', async () => {
    // Prepare
    putArtifact();
    fake.script((req, res) => {
      if (isBlob(req.url)) {
        res.writeHead(302, { location: req.url }).end();
        return true;
      }
    });
    // Act / Assess
    await expectCode(pull(), 'REGISTRY_PROTOCOL');
  });
});
