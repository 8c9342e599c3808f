/**
 * What the mirror lists, read as an agent reads it (the signed v2 index and the nodes it pins,
 * every signature and pin checked against the keys the mirror published first), and the tally of
 * a case: pushes listed, lost and duplicated.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PUBLIC_KEY_FILE } from '../../shared/adapters/local/signer.ts';
import { readMirrorListing, readVerifiedListing } from '../../shared/cli/listing.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { loadTrustedKeys, type TrustedKey } from '../../shared/core/manifest/index.ts';
import { pushWasm } from '../../test/support/push.ts';
import { sha256Hex } from '../../test/support/registry.ts';
import { sleep } from './harness.ts';

/** One push as the registry accepted it. */
export interface Pushed {
  /** `<registry host>/<repository>`, the name the manifest lists. */
  name: string;
  tag: string;
  /** The manifest digest the registry holds. */
  digest: string;
  /** The module's sha256 (hex). */
  sha256: string;
}

export interface Tally {
  listed: number;
  lost: number;
  duplicated: number;
  /** Names of the lost pushes, for the report. */
  missing: string[];
}

export type ListingReader = () => Promise<ManifestModule[]>;

/** Pushes a module as `repo:tag` with skopeo (retrying while the registry is away); returns what was pushed. */
export async function push(
  registryHost: string,
  repoAndTag: string,
  bytes: Uint8Array,
  format: 'wasm-artifact' | 'compat-oci' = 'wasm-artifact',
  retryForMs = 0,
): Promise<Pushed> {
  const [repo, tag] = repoAndTag.split(':') as [string, string];
  const deadline = Date.now() + retryForMs;
  for (;;) {
    try {
      const { digest } = await pushWasm(registryHost, repoAndTag, bytes, format);
      return { name: `${registryHost}/${repo}`, tag, digest, sha256: sha256Hex(bytes) };
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(300);
    }
  }
}

/** The trusted keys a mirror publishes, fetched once and pinned for the rest of a case. */
export async function pinKeys(mirrorUrl: string): Promise<TrustedKey[]> {
  const res = await fetch(`${mirrorUrl}/keys.json`);
  if (!res.ok) throw new Error(`GET keys.json: ${res.status}`);
  return loadTrustedKeys(await res.text());
}

/** Reads the verified listing over HTTP. */
export function listingOver(mirrorUrl: string, trustedKeys: TrustedKey[], mirrorName: string): ListingReader {
  return async () => (await readMirrorListing(mirrorUrl, { trustedKeys, mirrorName })).payload.modules;
}

/**
 * Reads the verified listing from a data directory (no server), with the keys.json it holds, or
 * its public key file where only `wasm-mirror mirror` has run (the server writes keys.json).
 */
export function listingIn(dataDir: string, mirrorName: string): ListingReader {
  return async () => {
    const keys = [join(dataDir, 'keys.json'), join(dataDir, 'private', PUBLIC_KEY_FILE)].find(existsSync);
    if (keys === undefined) throw new Error(`no keys in ${dataDir}`);
    const trustedKeys = loadTrustedKeys(readFileSync(keys, 'utf8'));
    const index = join(dataDir, 'manifests', 'v2', 'index.json');
    const listing = await readVerifiedListing(index, new Uint8Array(readFileSync(index)), {
      trustedKeys,
      mirrorName,
    });
    return listing.payload.modules;
  };
}

/**
 * Lost: a push with no entry of its name and tag for exactly its digest and module. Duplicated:
 * an entry past the first for one (name, tag), or a push's module listed under a second digest.
 */
export function tally(expected: readonly Pushed[], modules: readonly ManifestModule[]): Tally {
  const missing = expected.filter(
    (p) =>
      !modules.some(
        (m) => m.name === p.name && m.tag === p.tag && m.ociDigest === p.digest && m.sha256 === p.sha256,
      ),
  );
  const extra = new Set<number>();
  const byNameTag = new Map<string, number[]>();
  modules.forEach((m, i) => {
    const key = `${m.name}:${m.tag}`;
    byNameTag.set(key, [...(byNameTag.get(key) ?? []), i]);
  });
  for (const indexes of byNameTag.values()) for (const i of indexes.slice(1)) extra.add(i);
  for (const p of expected) {
    const digests = new Map<string, number>();
    modules.forEach((m, i) => {
      if (m.name === p.name && m.sha256 === p.sha256 && !digests.has(m.ociDigest))
        digests.set(m.ociDigest, i);
    });
    for (const i of [...digests.values()].slice(1)) extra.add(i);
  }
  return {
    listed: modules.length,
    lost: missing.length,
    duplicated: extra.size,
    missing: missing.map((p) => `${p.name}:${p.tag}`),
  };
}

/**
 * Reads the listing until every push is listed or `timeoutMs` passes (a read that fails, the
 * server restarting, is tried again); returns the last tally and when it was taken.
 */
export async function settle(
  read: ListingReader,
  expected: readonly Pushed[],
  timeoutMs: number,
): Promise<Tally & { ms: number }> {
  const started = performance.now();
  const deadline = Date.now() + timeoutMs;
  let last: Tally | undefined;
  let lastError: unknown;
  for (;;) {
    try {
      last = tally(expected, await read());
      if (last.lost === 0) break;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) break;
    await sleep(100);
  }
  if (last === undefined) throw new Error(`no listing could be read: ${(lastError as Error)?.message}`);
  return { ...last, ms: performance.now() - started };
}
