/**
 * The publisher: folds mirror results into the next signed manifest. Publishes are serialised
 * (FIFO queue with one message group in AWS, one consumer embedded), and `manifests/<version>.json`
 * is create-only, so even two publishers racing can never both write a version: the loser builds
 * on the winner's manifest and tries the next version.
 */
import { createPublicKey } from 'node:crypto';
import {
  MANIFEST_TYPE,
  type ManifestModule,
  type ManifestPayload,
  type ModuleRecord,
  storageKeys,
} from '../domain.ts';
import { isWasmMirrorError, WasmMirrorError } from '../errors.ts';
import { compareModules, signManifest, toManifestModule } from '../manifest/index.ts';
import { metricNames } from '../metrics.ts';
import type { PublishRequest } from '../ports.ts';
import type { PipelineDeps } from './context.ts';
import { admitNewest } from './observations.ts';
import { entryKey, readLatestManifest, readManifest, type StoredManifest } from './state.ts';

export type PublisherDeps = Pick<
  PipelineDeps,
  'config' | 'store' | 'signer' | 'clock' | 'logger' | 'metrics'
>;

/** The manifest in force after a publish run, whether this run wrote it or left it as it was. */
export interface PublishOutcome {
  published: boolean;
  version: number;
  modules: number;
  issuedAt: string;
  expiresAt: string;
}

const IMMUTABLE = 'public, max-age=31536000, immutable';
/** Agents poll latest.json; a short cache keeps CDN load low without delaying a publish long. */
const LATEST_CACHE = 'public, max-age=30';
const MAX_VERSION_RACES = 20;

export function createPublisher(
  deps: PublisherDeps,
): (requests: PublishRequest[]) => Promise<PublishOutcome> {
  return async (requests) => {
    const manual = requests.some((r) => r.kind === 'resign' && r.reason === 'manual');
    // latest.json missing while versions exist (deleted by hand, a bucket restored in part):
    // continue from the highest version rather than walking up from 1.
    let base = (await readLatestManifest(deps.store)) ?? (await readHighestVersion(deps.store));
    const records = await admitNewest(
      deps,
      requests.flatMap((r) => (r.kind === 'record' ? [r.record] : [])),
      base?.payload.modules ?? [],
    );
    // A version past latest.json exists when an earlier publish stopped between its two writes
    // (or another publisher won a race): adopt it so latest.json catches up.
    let mustAdvance = false;
    for (let race = 0; race < MAX_VERSION_RACES; race++) {
      const ahead = await readManifest(deps.store, storageKeys.manifest((base?.payload.version ?? 0) + 1));
      if (ahead !== undefined) {
        base = ahead;
        mustAdvance = true;
        continue;
      }
      const now = deps.clock.now();
      const { modules, changed } = mergeRecords(base?.payload.modules ?? [], records);
      if (base !== undefined && !changed && !mustAdvance && !manual && !needsResign(base, deps, now)) {
        const { version, issuedAt, expiresAt } = base.payload;
        return { published: false, version, modules: modules.length, issuedAt, expiresAt };
      }
      const payload: ManifestPayload = {
        type: MANIFEST_TYPE,
        mirror: deps.config.mirror.name,
        version: (base?.payload.version ?? 0) + 1,
        issuedAt: isoSeconds(now),
        expiresAt: isoSeconds(new Date(now.getTime() + deps.config.mirror.manifestTtlMs)),
        modules,
      };
      const signed = await signManifest(payload, deps.signer);
      try {
        await deps.store.create(storageKeys.manifest(payload.version), signed.bytes, {
          contentType: 'application/json',
          cacheControl: IMMUTABLE,
        });
      } catch (err) {
        if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) throw err;
        deps.logger.warn('manifest version already written, building on it', { version: payload.version });
        continue;
      }
      await deps.store.put(storageKeys.latestManifest, signed.bytes, {
        contentType: 'application/json',
        cacheControl: LATEST_CACHE,
      });
      deps.metrics.count(metricNames.manifestsPublished);
      deps.logger.info('manifest published', {
        version: payload.version,
        modules: modules.length,
        records: records.length,
        expiresAt: payload.expiresAt,
      });
      return {
        published: true,
        version: payload.version,
        modules: modules.length,
        issuedAt: payload.issuedAt,
        expiresAt: payload.expiresAt,
      };
    }
    throw new WasmMirrorError('STORAGE_FAILURE', 'could not claim a manifest version after repeated races', {
      retryable: true,
    });
  };
}

async function readHighestVersion(store: PublisherDeps['store']): Promise<StoredManifest | undefined> {
  let highest = 0;
  for await (const object of store.list('manifests/')) {
    const match = /^manifests\/([1-9][0-9]*)\.json$/.exec(object.key);
    if (match !== null) highest = Math.max(highest, Number(match[1]));
  }
  return highest === 0 ? undefined : readManifest(store, storageKeys.manifest(highest));
}

function needsResign(base: StoredManifest, deps: PublisherDeps, now: Date): boolean {
  if (base.payload.mirror !== deps.config.mirror.name) return true;
  return Date.parse(base.payload.expiresAt) - now.getTime() < deps.config.mirror.resignBeforeMs;
}

/**
 * Applies mirror results to the listed modules: a (name, tag) appears once, a tag that moved to
 * a new digest replaces its entry (the old bytes stay in storage), and the list is sorted by
 * (name, tag) so the signed bytes do not depend on arrival order.
 */
export function mergeRecords(
  current: readonly ManifestModule[],
  records: readonly ModuleRecord[],
): { modules: ManifestModule[]; changed: boolean } {
  const byKey = new Map(current.map((m) => [entryKey(m.name, m.tag), m]));
  let changed = false;
  for (const r of records) {
    const key = entryKey(r.name, r.tag);
    const existing = byKey.get(key);
    if (existing !== undefined && existing.ociDigest === r.ociDigest && existing.sha256 === r.sha256)
      continue;
    // A digest-only push of something already listed under a tag adds nothing.
    if (r.tag === '' && [...byKey.values()].some((m) => m.name === r.name && m.ociDigest === r.ociDigest))
      continue;
    byKey.set(key, toManifestModule(r));
    changed = true;
  }
  const modules = [...byKey.values()].sort(compareModules);
  return { modules, changed };
}

/** Second precision, as in DESIGN.md's example (`2026-01-10T12:00:00Z`). */
export const isoSeconds = (d: Date): string => `${d.toISOString().slice(0, 19)}Z`;

/**
 * keys.json beside the manifests: the signing key plus any earlier keys still listed, so a
 * rotation can be rolled out (agents trust both, then the old one is retired).
 */
export async function writeKeysJson(deps: Pick<PipelineDeps, 'store' | 'signer' | 'config'>): Promise<void> {
  const spki = Buffer.from(await deps.signer.publicKeySpki());
  const keyid = await deps.signer.keyId();
  const publicKey = createPublicKey({ key: spki, format: 'der', type: 'spki' }).export({
    format: 'pem',
    type: 'spki',
  }) as string;
  type KeyEntry = { keyid: string; publicKey: string; notBefore?: string; notAfter?: string };
  let keys: KeyEntry[] = [];
  const existing = await deps.store.getBytes(storageKeys.keys, 1024 * 1024);
  if (existing !== undefined) {
    try {
      const parsed = JSON.parse(Buffer.from(existing.bytes).toString('utf8')) as { keys?: KeyEntry[] };
      keys = Array.isArray(parsed.keys) ? parsed.keys.filter((k) => typeof k?.keyid === 'string') : [];
    } catch {
      keys = [];
    }
  }
  if (keys.some((k) => k.keyid === keyid)) return;
  // No notBefore: agents' clocks may lag the mirror's; the operator adds validity windows when rotating.
  keys.push({ keyid, publicKey });
  const body = `${JSON.stringify({ mirror: deps.config.mirror.name, keys }, null, 2)}\n`;
  await deps.store.put(storageKeys.keys, Buffer.from(body), {
    contentType: 'application/json',
    cacheControl: 'public, max-age=300',
  });
}
