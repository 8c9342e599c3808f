/**
 * Rules that need TLS registries (https by default, no downgrade on redirects or token realms,
 * Docker Hub host mapping), checked through an injected fetch so no certificate is needed.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';
import { RegistryClient, type RepositoryTarget } from '../../shared/core/oci/client.ts';
import { parseReference } from '../../shared/core/oci/reference.ts';

type Route = (url: URL, init: RequestInit) => Response | undefined;

/** A fetch that answers from routes and records every request. */
function mockFetch(...routes: Route[]) {
  const calls: { url: string; headers: Record<string, string> }[] = [];
  const fn: typeof fetch = async (input, init = {}) => {
    const url = new URL(String(input));
    calls.push({ url: url.href, headers: { ...(init.headers as Record<string, string>) } });
    for (const r of routes) {
      const res = r(url, init);
      if (res !== undefined) return res;
    }
    return new Response('{"errors":[{"code":"NOT_FOUND"}]}', { status: 404 });
  };
  return { fn, calls };
}

const noGuard = async () => {};
const manifest = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: {},
  layers: [],
});

async function code(p: Promise<unknown>): Promise<ErrorCode | undefined> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  return err instanceof WasmMirrorError ? err.code : undefined;
}

describe('https registries', () => {
  it('uses https unless the registry is marked insecure, and maps Docker Hub', async () => {
    // Prepare
    const { fn, calls } = mockFetch(() => new Response(manifest, { status: 200 }));
    const client = new RegistryClient({ fetch: fn, addressGuard: noGuard });
    const ref = parseReference('nginx:1.27');
    // Act
    await client.getManifest(
      { registry: ref.registry, repository: ref.repository, insecure: false },
      ref.reference,
    );
    // Assess
    expect(calls[0]?.url).toBe('https://registry-1.docker.io/v2/library/nginx/manifests/1.27');
    expect(calls[0]?.headers.accept).toContain('application/vnd.oci.image.index.v1+json');
    expect(calls[0]?.headers.accept).toContain('application/vnd.docker.distribution.manifest.list.v2+json');
  });

  it('refuses a redirect from https to plain http (INSECURE_NOT_ALLOWED)', async () => {
    // Prepare
    const { fn, calls } = mockFetch((url) =>
      url.host === 'registry.test'
        ? new Response(null, { status: 307, headers: { location: 'http://cdn.test/blob' } })
        : undefined,
    );
    const client = new RegistryClient({ fetch: fn, addressGuard: noGuard });
    const target: RepositoryTarget = { registry: 'registry.test', repository: 'a/b', insecure: false };
    // Act / Assess
    expect(await code(client.getManifest(target, 'v1'))).toBe('INSECURE_NOT_ALLOWED');
    expect(calls.map((c) => c.url)).toEqual(['https://registry.test/v2/a/b/manifests/v1']);
  });

  it('refuses a plain-http token realm for a TLS registry, before sending credentials (INSECURE_NOT_ALLOWED)', async () => {
    // Prepare
    const { fn, calls } = mockFetch((url) =>
      url.host === 'registry.test'
        ? new Response(null, {
            status: 401,
            headers: { 'www-authenticate': 'Bearer realm="http://auth.test/token"' },
          })
        : undefined,
    );
    const client = new RegistryClient({ fetch: fn, addressGuard: noGuard });
    const target: RepositoryTarget = {
      registry: 'registry.test',
      repository: 'a/b',
      insecure: false,
      credentials: { username: 'u', password: 'secret' },
    };
    // Act / Assess
    expect(await code(client.getManifest(target, 'v1'))).toBe('INSECURE_NOT_ALLOWED');
    // Only the registry itself was asked, and never with the credentials: the realm was not contacted.
    expect(calls.map((c) => c.url)).toEqual(['https://registry.test/v2/a/b/manifests/v1']);
    expect(calls.map((c) => c.headers.authorization)).toEqual([undefined]);
  });

  it('drops Authorization on a cross-origin https redirect, and checks the target address', async () => {
    // Prepare
    const guarded: string[] = [];
    const { fn, calls } = mockFetch(
      (url, init) => {
        if (url.host !== 'registry.test') return undefined;
        if ((init.headers as Record<string, string>).authorization === undefined) {
          return new Response(null, { status: 401, headers: { 'www-authenticate': 'Basic realm="r"' } });
        }
        return new Response(null, { status: 302, headers: { location: 'https://cdn.test/signed?x=1' } });
      },
      (url) => (url.host === 'cdn.test' ? new Response(manifest, { status: 200 }) : undefined),
    );
    const client = new RegistryClient({
      fetch: fn,
      addressGuard: async (u) => {
        guarded.push(u.host);
      },
    });
    // Act
    await client.getManifest(
      {
        registry: 'registry.test',
        repository: 'a/b',
        insecure: false,
        credentials: { username: 'u', password: 'p' },
      },
      'v1',
    );
    // Assess
    const cdn = calls.find((c) => c.url.startsWith('https://cdn.test/'));
    expect(cdn?.url).toBe('https://cdn.test/signed?x=1');
    expect(cdn?.headers.authorization).toBeUndefined();
    expect(
      calls.filter((c) => c.url.startsWith('https://registry.test/')).at(-1)?.headers.authorization,
    ).toMatch(/^Basic /);
    expect(guarded).toEqual(['cdn.test']);
  });

  it('falls back to GET when HEAD carries no Docker-Content-Digest', async () => {
    // Prepare
    const { fn, calls } = mockFetch((_url, init) =>
      init.method === 'HEAD' ? new Response(null, { status: 200 }) : new Response(manifest, { status: 200 }),
    );
    const client = new RegistryClient({ fetch: fn, addressGuard: noGuard });
    // Act
    const digest = await client.resolveDigest(
      { registry: 'registry.test', repository: 'a', insecure: false },
      'v1',
    );
    // Assess: the digest of the bytes GET returned, not merely something digest-shaped.
    expect(digest).toBe(`sha256:${createHash('sha256').update(manifest).digest('hex')}`);
    expect(calls).toHaveLength(2);
  });
});
