/**
 * The publisher: folds mirror results into the next signed manifest (v2: docs/manifest-v2.md).
 * It reads only the bins the records touch and writes those bins, the pages above them and a new
 * index, so a publish costs what changed, not the mirror's size. Publishes are serialised (FIFO
 * queue with one message group in AWS, one consumer embedded), and `manifests/v2/index/<version>.json`
 * is create-only, so even two publishers racing can never both write a version: the loser builds
 * on the winner's index and tries the next version.
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
import { compareModules, signManifest, signPayload, toManifestModule } from '../manifest/index.ts';
import {
  binOf,
  buildTree,
  depthFor,
  envelopeWithNodes,
  FANOUT,
  INDEX_PAYLOAD_TYPE,
  INDEX_TYPE,
  type IndexPayload,
  type NodeLoader,
  type Pin,
  TreeEditor,
  v2Keys,
  validateIndexPayload,
  walkEntries,
} from '../manifest/v2.ts';
import { metricNames } from '../metrics.ts';
import type { PublishRequest } from '../ports.ts';
import { cacheControls } from '../storage-keys.ts';
import type { PipelineDeps } from './context.ts';
import { admitNewest } from './observations.ts';
import { changedNames, markPending } from './registry-view.ts';
import { applyRetention, retentionFor } from './retention.ts';
import {
  entryKey,
  highestIndexKey,
  highestManifestKey,
  readIndex,
  readIndexAt,
  readLatestManifest,
  readManifest,
  remembering,
  storeNodeLoader,
} from './state.ts';

export type PublisherDeps = Pick<
  PipelineDeps,
  'config' | 'store' | 'signer' | 'clock' | 'logger' | 'metrics' | 'registry'
>;

/** The manifest in force after a publish run, whether this run wrote it or left it as it was. */
export interface PublishOutcome {
  published: boolean;
  version: number;
  modules: number;
  issuedAt: string;
  expiresAt: string;
}

const IMMUTABLE = cacheControls.immutable;
/** Agents poll the index; a short cache keeps CDN load low without delaying a publish long. */
const LATEST_CACHE = cacheControls.latest;
const MAX_VERSION_RACES = 20;

export function createPublisher(
  deps: PublisherDeps,
): (requests: PublishRequest[]) => Promise<PublishOutcome> {
  return async (requests) => {
    // Each node read once per run: the lookup below and every editor read the same bins.
    const load = remembering(storeNodeLoader(deps.store));
    const manual = requests.some((r) => r.kind === 'resign' && r.reason === 'manual');
    let base = await readBase(deps);
    const editorFor = (b: Base) => new TreeEditor(b.root, b.depth, b.entries, load);
    const lookup = editorFor(base);
    const records = await admitNewest(
      deps,
      requests.flatMap((r) => (r.kind === 'record' ? [r.record] : [])),
      async (name, tag) =>
        (await lookup.bin(binOf(name, base.depth))).find((m) => m.name === name && m.tag === tag),
    );
    // A version past index.json exists when an earlier publish stopped between its writes (or
    // another publisher won a race): adopt it so index.json catches up.
    let mustAdvance = base.fromV1 && base.version > 0;
    for (let race = 0; race < MAX_VERSION_RACES; race++) {
      const ahead = await readIndexAt(deps.store, v2Keys.indexVersion(base.version + 1));
      if (ahead !== undefined) {
        base = fromIndex(ahead.payload);
        mustAdvance = true;
        continue;
      }
      // A publish stopped after its index and before v1's copy of it: v1's history gets it now.
      if (deps.config.mirror.legacyManifest && !base.fromV1 && base.version > 0) {
        await ensureLegacyManifest(deps, base, load);
      }
      const now = deps.clock.now();
      const editor = editorFor(base);
      const fullPass = requests.some((r) => r.kind === 'resign' && r.reason !== 'startup');
      const { changed, names } = await applyRecords(editor, records, deps.config, now, fullPass);
      let tree = await editor.commit();
      let depth = base.depth;
      if (depthFor(tree.entries, depth) > depth || base.fromV1) {
        // The tree outgrew its depth (or is built for the first time from a v1 manifest): rebin.
        depth = depthFor(tree.entries, depth);
        const all: ManifestModule[] = [];
        for await (const m of walkEntries(
          tree.root,
          base.depth,
          async (sha) => tree.nodes.get(sha) ?? (await load(sha)),
        ))
          all.push(m);
        tree = buildTree(all, depth);
      }
      if (base.version > 0 && !changed && !mustAdvance && !manual && !needsResign(base, deps, now)) {
        const { version, issuedAt, expiresAt, entries } = base;
        return { published: false, version, modules: entries, issuedAt, expiresAt };
      }
      const payload: IndexPayload = {
        type: INDEX_TYPE,
        mirror: deps.config.mirror.name,
        version: base.version + 1,
        issuedAt: isoSeconds(now),
        expiresAt: isoSeconds(new Date(now.getTime() + deps.config.mirror.manifestTtlMs)),
        entries: tree.entries,
        depth,
        root: tree.root,
      };
      // The registry view follows this version; marked first, so a stop after the index is finished later.
      if (deps.registry !== undefined) await markPending(deps.store, names);
      // Nodes first: everything the index pins exists before anyone can read the index.
      await writeNodes(deps, tree.nodes);
      const signed = await signPayload(INDEX_PAYLOAD_TYPE, validateIndexPayload(payload), deps.signer);
      // Small publishes carry their nodes beside the signature: one request brings an agent up to date.
      const indexBytes = envelopeWithNodes(signed.bytes, tree.nodes);
      try {
        await deps.store.create(v2Keys.indexVersion(payload.version), indexBytes, {
          contentType: 'application/json',
          cacheControl: IMMUTABLE,
        });
      } catch (err) {
        if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) throw err;
        deps.logger.warn('manifest version already written, building on it', { version: payload.version });
        continue;
      }
      await deps.store.put(v2Keys.index, indexBytes, {
        contentType: 'application/json',
        cacheControl: LATEST_CACHE,
      });
      if (deps.config.mirror.legacyManifest) await writeLegacyManifest(deps, payload, tree, load);
      deps.metrics.count(metricNames.manifestsPublished);
      deps.logger.info('manifest published', {
        version: payload.version,
        modules: payload.entries,
        records: records.length,
        nodesWritten: tree.nodes.size,
        expiresAt: payload.expiresAt,
      });
      return {
        published: true,
        version: payload.version,
        modules: payload.entries,
        issuedAt: payload.issuedAt,
        expiresAt: payload.expiresAt,
      };
    }
    throw new WasmMirrorError('STORAGE_FAILURE', 'could not claim a manifest version after repeated races', {
      retryable: true,
    });
  };
}

interface Base {
  version: number;
  mirror: string;
  issuedAt: string;
  expiresAt: string;
  entries: number;
  depth: number;
  root: Pin[];
  /** Built from a v1 manifest (a mirror upgraded in place): the first v2 publish must happen. */
  fromV1: boolean;
}

const EMPTY_ROOT: Pin[] = Array.from({ length: FANOUT }, () => null);

function fromIndex(p: IndexPayload): Base {
  const { version, mirror, issuedAt, expiresAt, entries, depth, root } = p;
  return { version, mirror, issuedAt, expiresAt, entries, depth, root, fromV1: false };
}

/**
 * The manifest to build on: index.json; else the highest index version (index.json lost); else
 * a v1 manifest (the tree is built from its list, its version continued); else nothing yet.
 */
async function readBase(deps: PublisherDeps): Promise<Base> {
  const index =
    (await readIndex(deps.store)) ?? (await readIndexAt(deps.store, await highestIndexKey(deps.store)));
  if (index !== undefined) return fromIndex(index.payload);
  const v1 =
    (await readLatestManifest(deps.store)) ??
    (await readManifest(deps.store, await highestManifestKey(deps.store)));
  if (v1 !== undefined) {
    const { version, mirror, issuedAt, expiresAt, modules } = v1.payload;
    const depth = depthFor(modules.length);
    const tree = buildTree(modules, depth);
    await writeNodes(deps, tree.nodes);
    return {
      version,
      mirror,
      issuedAt,
      expiresAt,
      entries: modules.length,
      depth,
      root: tree.root,
      fromV1: true,
    };
  }
  const never = new Date(0).toISOString();
  return {
    version: 0,
    mirror: deps.config.mirror.name,
    issuedAt: never,
    expiresAt: never,
    entries: 0,
    depth: 1,
    root: EMPTY_ROOT,
    fromV1: false,
  };
}

/**
 * Folds records into the bins they fall in and applies retention to the names they touch (to
 * every name, on a full pass); says whether any bin changed and which names' entries did.
 */
async function applyRecords(
  editor: TreeEditor,
  records: readonly ModuleRecord[],
  config: PublisherDeps['config'],
  now: Date,
  fullPass: boolean,
): Promise<{ changed: boolean; names: Set<string> }> {
  const byBin = new Map<string, ModuleRecord[]>();
  for (const r of records) {
    const prefix = binOf(r.name, editor.depth);
    byBin.set(prefix, [...(byBin.get(prefix) ?? []), r]);
  }
  if (fullPass)
    for (const prefix of await editor.binPrefixes()) if (!byBin.has(prefix)) byBin.set(prefix, []);
  let changed = false;
  const changedNamesAll = new Set<string>();
  for (const [prefix, binRecords] of byBin) {
    const before = await editor.bin(prefix);
    const merged = mergeRecords(before, binRecords);
    const names = fullPass
      ? new Set(merged.modules.map((m) => m.name))
      : new Set(binRecords.map((r) => r.name));
    const kept = pruneNames(merged.modules, names, config, now);
    if (!merged.changed && kept.length === merged.modules.length) continue;
    editor.setBin(prefix, kept);
    changed = true;
    for (const name of changedNames(before, kept)) changedNamesAll.add(name);
  }
  return { changed, names: changedNamesAll };
}

/** A bin's entries after retention for the given names (other names untouched). */
function pruneNames(
  modules: readonly ManifestModule[],
  names: ReadonlySet<string>,
  config: PublisherDeps['config'],
  now: Date,
): ManifestModule[] {
  const kept: ManifestModule[] = modules.filter((m) => !names.has(m.name));
  for (const name of names) {
    kept.push(
      ...applyRetention(
        modules.filter((m) => m.name === name),
        retentionFor(config, name),
        now,
      ),
    );
  }
  return kept.sort(compareModules);
}

/** Content-addressed and immutable: a node already there (an earlier publish, a retry) is the same bytes. */
async function writeNodes(deps: PublisherDeps, nodes: ReadonlyMap<string, Uint8Array>): Promise<void> {
  for (const [sha256, bytes] of nodes) {
    try {
      await deps.store.create(v2Keys.node(sha256), bytes, {
        contentType: 'application/json',
        sha256,
        cacheControl: IMMUTABLE,
      });
    } catch (err) {
      if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) throw err;
    }
  }
}

/**
 * The v1 document for agents not yet on v2, kept for one release (`mirror.legacyManifest`): the
 * whole list, signed, as `manifests/<version>.json` and `manifests/latest.json`.
 */
async function writeLegacyManifest(
  deps: PublisherDeps,
  index: IndexPayload,
  tree: { root: Pin[]; nodes: ReadonlyMap<string, Uint8Array> },
  load: NodeLoader,
): Promise<void> {
  const modules: ManifestModule[] = [];
  for await (const m of walkEntries(
    tree.root,
    index.depth,
    async (sha) => tree.nodes.get(sha) ?? (await load(sha)),
  ))
    modules.push(m);
  const payload: ManifestPayload = {
    type: MANIFEST_TYPE,
    mirror: index.mirror,
    version: index.version,
    issuedAt: index.issuedAt,
    expiresAt: index.expiresAt,
    modules: modules.sort(compareModules),
  };
  const signed = await signManifest(payload, deps.signer);
  try {
    await deps.store.create(storageKeys.manifest(payload.version), signed.bytes, {
      contentType: 'application/json',
      cacheControl: IMMUTABLE,
    });
  } catch (err) {
    if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) throw err;
  }
  await deps.store.put(storageKeys.latestManifest, signed.bytes, {
    contentType: 'application/json',
    cacheControl: LATEST_CACHE,
  });
}

/** Writes v1's numbered manifest for an index version that has none (latest.json moves on with the next version). */
async function ensureLegacyManifest(deps: PublisherDeps, base: Base, load: NodeLoader): Promise<void> {
  if ((await deps.store.head(storageKeys.manifest(base.version))) !== undefined) return;
  const { version, mirror, issuedAt, expiresAt, entries, depth, root } = base;
  deps.logger.warn('writing the v1 manifest a stopped publish left out', { version });
  await writeLegacyManifest(
    deps,
    { type: INDEX_TYPE, mirror, version, issuedAt, expiresAt, entries, depth, root },
    { root, nodes: new Map() },
    load,
  );
}

function needsResign(base: Base, deps: PublisherDeps, now: Date): boolean {
  if (base.mirror !== deps.config.mirror.name) return true;
  return Date.parse(base.expiresAt) - now.getTime() < deps.config.mirror.resignBeforeMs;
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

/** Second precision (`2026-01-10T12:00:00Z`): the signed times need no more. */
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
  let mirror: unknown;
  const existing = await deps.store.getBytes(storageKeys.keys, 1024 * 1024);
  if (existing !== undefined) {
    try {
      const parsed = JSON.parse(Buffer.from(existing.bytes).toString('utf8')) as {
        mirror?: unknown;
        keys?: KeyEntry[];
      };
      mirror = parsed.mirror;
      keys = Array.isArray(parsed.keys) ? parsed.keys.filter((k) => typeof k?.keyid === 'string') : [];
    } catch {
      keys = [];
    }
  }
  const listed = keys.some((k) => k.keyid === keyid);
  // A mirror renamed in the config keeps its keys; only the name they are published under changes.
  if (listed && mirror === deps.config.mirror.name) return;
  // No notBefore: agents' clocks may lag the mirror's; the operator adds validity windows when rotating.
  if (!listed) keys.push({ keyid, publicKey });
  const body = `${JSON.stringify({ mirror: deps.config.mirror.name, keys }, null, 2)}\n`;
  await deps.store.put(storageKeys.keys, Buffer.from(body), {
    contentType: 'application/json',
    cacheControl: 'public, max-age=300',
  });
}
