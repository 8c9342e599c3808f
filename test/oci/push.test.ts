/**
 * The push client against a scripted registry: the HEAD / POST / PUT sequence of a monolithic
 * upload, relative and absolute Locations, credentials kept to the registry's host, retries that
 * start an upload over, and digests checked on the registry's answers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';
import type { RepositoryTarget } from '../../shared/core/oci/client.ts';
import { type PushArtifact, RegistryPusher } from '../../shared/core/oci/push.ts';
import { type FakeRegistry, MEDIA, sha256Digest, startFakeRegistry } from '../support/index.ts';

const fast = { retry: { baseDelayMs: 5, maxDelayMs: 20, budgetMs: 5_000 } };

let fake: FakeRegistry;
let other: FakeRegistry | undefined;

beforeEach(async () => {
  fake = await startFakeRegistry();
});
afterEach(async () => {
  await fake.stop();
  await other?.stop();
  other = undefined;
});

function repo(credentials?: { username: string; password: string }): RepositoryTarget {
  const target: RepositoryTarget = { registry: fake.host, repository: 'plugins/x', insecure: true };
  if (credentials !== undefined) target.credentials = credentials;
  return target;
}

function bytes(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(text);
}

/** A small artifact: a config and one layer, and the manifest naming them. */
function artifact(): PushArtifact {
  const config = bytes('{"architecture":"wasm","os":"wasip1"}');
  const layer = bytes('\0asm layer bytes');
  const descriptor = (mediaType: string, b: Uint8Array) => ({
    mediaType,
    digest: sha256Digest(b),
    size: b.length,
  });
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: descriptor(MEDIA.cncfWasmConfig, config),
    layers: [descriptor(MEDIA.cncfWasmLayer, layer)],
  };
  return {
    manifest: { mediaType: MEDIA.ociManifest, bytes: bytes(JSON.stringify(manifest)) },
    blobs: [
      { descriptor: manifest.config, bytes: config },
      { descriptor: manifest.layers[0]!, bytes: layer },
    ],
  };
}

type LocationStyle = 'relative' | 'absolute' | { origin: string };

interface PushLog {
  /** Content-Type of each manifest PUT. */
  manifestTypes: string[];
  /** Query string of each blob PUT. */
  putQueries: string[];
}

/**
 * Makes the fake registry accept pushes: POST opens a session answered with a Location in the
 * given style (carrying opaque `_state`), PUT with `?digest=` stores the blob after checking it,
 * PUT of a manifest stores it under the tag.
 */
function acceptPushes(target: FakeRegistry, style: LocationStyle = 'relative', log?: PushLog): void {
  target.script((req, res, registry) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'POST' && /^\/v2\/.+\/blobs\/uploads\/$/.test(url.pathname)) {
      const path = `${url.pathname}session-1?_state=a%2Bb%3D%3D`;
      const location =
        style === 'relative' ? path : `${style === 'absolute' ? registry.url : style.origin}${path}`;
      res.writeHead(202, { location, 'content-length': '0' }).end();
      return true;
    }
    if (req.method !== 'PUT') return;
    void readBody(req).then((body) => {
      const upload = /\/blobs\/uploads\/session-1$/.test(url.pathname);
      if (upload) {
        log?.putQueries.push(url.search);
        const digest = url.searchParams.get('digest');
        if (digest !== sha256Digest(body) || url.searchParams.get('_state') !== 'a+b==') {
          return send(res, 400, '{"errors":[{"code":"DIGEST_INVALID","message":"digest invalid"}]}');
        }
        registry.putBlob(body);
        return send(res, 201, '', { 'docker-content-digest': digest });
      }
      const m = /^\/v2\/(.+)\/manifests\/(.+)$/.exec(url.pathname);
      if (m === null) return send(res, 404, '');
      const mediaType = String(req.headers['content-type']);
      log?.manifestTypes.push(mediaType);
      const digest = registry.putManifest(m[1]!, [m[2]!], body, mediaType);
      return send(res, 201, '', { 'docker-content-digest': digest });
    });
    return true;
  });
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const parts: Buffer[] = [];
  for await (const chunk of req) parts.push(chunk as Buffer);
  return new Uint8Array(Buffer.concat(parts));
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-length': String(Buffer.byteLength(body)), ...headers }).end(body);
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

const methods = (registry: FakeRegistry) =>
  registry.requests.map((r) => `${r.method} ${r.path.split('?')[0]}`);

describe('monolithic upload', () => {
  it('checks each blob, uploads it with POST then PUT ?digest=, then puts the manifest', async () => {
    // Prepare
    const log: PushLog = { manifestTypes: [], putQueries: [] };
    acceptPushes(fake, 'relative', log);
    const a = artifact();
    const [config, layer] = a.blobs.map((b) => b.descriptor.digest) as [string, string];

    // Act
    const result = await new RegistryPusher(fast).push(repo(), '1.0', a);

    // Assess
    expect(result).toEqual({
      digest: sha256Digest(a.manifest.bytes),
      mediaType: MEDIA.ociManifest,
      size: a.manifest.bytes.length,
      uploaded: 2,
      existing: 0,
    });
    expect(methods(fake)).toEqual([
      `HEAD /v2/plugins/x/blobs/${config}`,
      'POST /v2/plugins/x/blobs/uploads/',
      'PUT /v2/plugins/x/blobs/uploads/session-1',
      `HEAD /v2/plugins/x/blobs/${layer}`,
      'POST /v2/plugins/x/blobs/uploads/',
      'PUT /v2/plugins/x/blobs/uploads/session-1',
      'PUT /v2/plugins/x/manifests/1.0',
    ]);
    // The registry's opaque state is kept as sent; the digest is appended.
    expect(log.putQueries[0]).toBe(`?_state=a%2Bb%3D%3D&digest=${encodeURIComponent(config)}`);
    expect(log.manifestTypes).toEqual([MEDIA.ociManifest]);
  });

  it('follows an absolute Location on the registry itself', async () => {
    // Prepare
    acceptPushes(fake, 'absolute');

    // Act
    const result = await new RegistryPusher(fast).push(repo(), '1.0', artifact());

    // Assess
    expect(result.uploaded).toBe(2);
    expect(methods(fake).filter((m) => m.startsWith('PUT'))).toHaveLength(3);
  });

  it('skips blobs the repository already has', async () => {
    // Prepare
    acceptPushes(fake);
    const a = artifact();
    for (const b of a.blobs) fake.putBlob(b.bytes);

    // Act
    const result = await new RegistryPusher(fast).push(repo(), 'v1', a);

    // Assess
    expect(result).toMatchObject({ uploaded: 0, existing: 2 });
    expect(methods(fake).filter((m) => m.startsWith('POST'))).toEqual([]);
  });

  it('pushes the same bytes to the same digest twice', async () => {
    // Prepare
    acceptPushes(fake);
    const pusher = new RegistryPusher(fast);

    // Act
    const first = await pusher.push(repo(), 'one', artifact());
    const second = await pusher.push(repo(), 'two', artifact());

    // Assess
    expect(second.digest).toBe(first.digest);
    expect(second).toMatchObject({ uploaded: 0, existing: 2 });
  });
});

describe('authentication', () => {
  it('asks the token server for pull,push scope and sends the token on every request', async () => {
    // Prepare
    acceptPushes(fake);
    const scopes: string[] = [];
    fake.script((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname === '/token') {
        scopes.push(url.searchParams.get('scope') ?? '');
        send(res, 200, JSON.stringify({ token: 'push-token', expires_in: 300 }));
        return true;
      }
      if (req.headers.authorization !== 'Bearer push-token') {
        res
          .writeHead(401, {
            'www-authenticate': `Bearer realm="${fake.url}/token",service="fake",scope="repository:plugins/x:pull"`,
          })
          .end();
        return true;
      }
    });

    // Act
    await new RegistryPusher(fast).push(repo({ username: 'u', password: 'p' }), 'v1', artifact());

    // Assess
    expect(scopes).toEqual(['repository:plugins/x:pull,push']);
    const api = fake.requests.filter((r) => r.path.startsWith('/v2/'));
    // The first HEAD is challenged; every request after it carries the token.
    expect(api[0]!.headers.authorization).toBeUndefined();
    expect(api.slice(1).every((r) => r.headers.authorization === 'Bearer push-token')).toBe(true);
  });

  it('never sends credentials to an upload Location on another host', async () => {
    // Prepare
    other = await startFakeRegistry();
    acceptPushes(fake, { origin: other.url });
    acceptPushes(other);
    fake.script((req, res) => {
      if (req.headers.authorization === undefined) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
        return true;
      }
    });

    // Act
    const result = await new RegistryPusher(fast).push(
      repo({ username: 'u', password: 'p' }),
      'v1',
      artifact(),
    );

    // Assess
    expect(result.uploaded).toBe(2);
    expect(other.requests.map((r) => r.method)).toEqual(['PUT', 'PUT']);
    expect(other.requests.every((r) => r.headers.authorization === undefined)).toBe(true);
  });

  it('says the credentials were refused when the registry still answers 401', async () => {
    // Prepare
    fake.script((_req, res) => {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="fake"' }).end();
      return true;
    });

    // Act
    const err = await expectCode(
      new RegistryPusher(fast).push(repo({ username: 'u', password: 'wrong' }), 'v1', artifact()),
      'UNAUTHORIZED',
    );

    // Assess
    expect(err.message).toContain('refused the credentials');
  });
});

describe('failures', () => {
  it('starts the upload over when the PUT fails with a 5xx', async () => {
    // Prepare
    acceptPushes(fake);
    let failures = 0;
    fake.script((req, res) => {
      if (req.method === 'PUT' && req.url?.includes('/blobs/uploads/') && failures++ === 0) {
        req.resume();
        res.writeHead(503).end();
        return true;
      }
    });

    // Act
    const result = await new RegistryPusher(fast).push(repo(), 'v1', artifact());

    // Assess
    expect(result.uploaded).toBe(2);
    expect(methods(fake).filter((m) => m.startsWith('POST'))).toHaveLength(3);
  });

  it('refuses an upload that the registry stored under another digest', async () => {
    // Prepare
    fake.script((req, res) => {
      if (req.method === 'POST') {
        res.writeHead(202, { location: '/v2/plugins/x/blobs/uploads/s' }).end();
        return true;
      }
      if (req.method === 'PUT') {
        req.resume();
        res.writeHead(201, { 'docker-content-digest': sha256Digest(bytes('other')) }).end();
        return true;
      }
    });

    // Act, Assess
    await expectCode(new RegistryPusher(fast).push(repo(), 'v1', artifact()), 'DIGEST_MISMATCH');
  });

  it('refuses an upload session without a Location', async () => {
    // Prepare
    fake.script((req, res) => {
      if (req.method === 'POST') {
        res.writeHead(202).end();
        return true;
      }
    });

    // Act
    const err = await expectCode(
      new RegistryPusher(fast).push(repo(), 'v1', artifact()),
      'REGISTRY_PROTOCOL',
    );

    // Assess
    expect(err.message).toContain('Location');
  });

  it("maps the registry's error body on a refused manifest", async () => {
    // Prepare
    acceptPushes(fake);
    fake.script((req, res) => {
      if (req.method === 'PUT' && req.url?.includes('/manifests/')) {
        req.resume();
        send(res, 400, '{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}');
        return true;
      }
    });

    // Act
    const err = await expectCode(
      new RegistryPusher(fast).push(repo(), 'v1', artifact()),
      'REGISTRY_PROTOCOL',
    );

    // Assess
    expect(err.message).toContain('MANIFEST_INVALID');
  });

  it('refuses blobs whose bytes do not match their descriptor before contacting the registry', async () => {
    // Prepare
    const a = artifact();
    a.blobs[1]!.bytes = bytes('tampered');

    // Act
    await expectCode(new RegistryPusher(fast).push(repo(), 'v1', a), 'DIGEST_MISMATCH');

    // Assess
    expect(fake.requests).toEqual([]);
  });

  it('names the host when nothing listens there', async () => {
    // Prepare
    const host = fake.host;
    await fake.stop();

    // Act
    const err = await expectCode(
      new RegistryPusher({ retry: { ...fast.retry, maxAttempts: 1 } }).push(repo(), 'v1', artifact()),
      'REGISTRY_UNAVAILABLE',
    );
    fake = await startFakeRegistry();

    // Assess
    expect(err.message).toBe(`cannot connect to ${host}: connection refused`);
  });

  it('tells a plain-http registry apart when spoken to in TLS, without retrying', async () => {
    // Prepare
    const target = { ...repo(), insecure: false };

    // Act
    const err = await expectCode(
      new RegistryPusher(fast).push(target, 'v1', artifact()),
      'INSECURE_NOT_ALLOWED',
    );

    // Assess
    expect(err.message).toBe(`${fake.host} answers plain http, not TLS`);
    expect(err.retryable).toBe(false);
  });
});
