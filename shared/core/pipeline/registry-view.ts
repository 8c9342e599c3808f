/**
 * The registry view: the read-only OCI API written out as objects (`registry/…`), so a CDN can
 * serve `/v2/` straight from storage. It is derived, never trusted on its own: for each name it
 * holds exactly what the newest signed manifest lists (a tag's manifest, the manifests and blobs
 * a listed entry reaches, the tag list), copied from the content intake verified and kept.
 *
 * The publisher keeps it in step. Before a version that changes a name is written, the name is
 * marked pending (`state/registry-pending/`); after the version is written its objects are
 * brought in line and the mark removed, so a publish that stops half way is finished by the
 * next one. Per name, a state note records which keys exist with what content, written before
 * and after each change so that it always names at least every object that may exist: whatever
 * is no longer wanted can be found and deleted. A scheduled sweep walks a slice of names each
 * time, which also fills in names listed before the view existed.
 */
import { createHash } from 'node:crypto';
import type { MirrorConfig } from '../config.ts';
import type { ManifestModule } from '../domain.ts';
import { matchesAny } from '../glob.ts';
import { readBin } from '../manifest/v2.ts';
import type { Logger, ObjectStore, RegistryObjectWriter } from '../ports.ts';
import {
  cacheControls,
  registryKeys,
  registryMetadata,
  statePrefixes,
  storageKeys,
} from '../storage-keys.ts';
import { isValidOciName, type KeptContent, type OciNote, readOciNote } from './oci-view.ts';
import { listedEntriesReader, readIndex, storeNodeLoader } from './state.ts';

export interface RegistryViewDeps {
  store: ObjectStore;
  registry: RegistryObjectWriter;
  config: Pick<MirrorConfig, 'sources'>;
  logger: Logger;
  /**
   * Notes already read, by `name@digest`: a note never changes once written, so a process that
   * publishes again (a warm Lambda container) reads each one once.
   */
  notes?: NoteCache;
}

/** A bounded map of notes; the oldest goes first when full. */
export class NoteCache {
  readonly #notes = new Map<string, OciNote>();
  constructor(readonly max = 10_000) {}

  async read(store: ObjectStore, name: string, digest: string): Promise<OciNote | undefined> {
    const key = `${name}@${digest}`;
    const cached = this.#notes.get(key);
    if (cached !== undefined) return cached;
    const note = await readOciNote(store, name, digest);
    // Only notes that exist: a missing one may be written by the next intake.
    if (note !== undefined) {
      if (this.#notes.size >= this.max) this.#notes.delete(this.#notes.keys().next().value!);
      this.#notes.set(key, note);
    }
    return note;
  }
}

export interface RegistrySyncResult {
  names: number;
  written: number;
  deleted: number;
  /** Names whose objects could not be brought in line this time (logged; retried next run). */
  failed: number;
}

const NOTE_TYPE = 'wasm-mirror.registry-view/v1';
/** A tag (and the tag list) may point elsewhere after the next publish; CDNs keep them as briefly as the index. */
const MUTABLE_CACHE = cacheControls.latest;
const IMMUTABLE_CACHE = cacheControls.immutable;
/** Far above a Wasm image's manifest; the puller caps what it accepts at 4 MiB too. */
const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
const MAX_STATE_BYTES = 16 * 1024 * 1024;
/** In the note: an object that may exist but whose content is not known (a write was under way). */
const UNKNOWN = '?';
/** Names whose objects are compared at once (each costs a few small reads). */
const CONCURRENCY = 8;

const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex');
const pendingKey = (name: string) => `${statePrefixes.registryPending}${hashOf(name)}`;
const sourceOf = (ociName: string) => ociName.slice(0, ociName.indexOf('/'));
/** Under the source's id, so what a source removed from the config left can be found by it. */
const stateKey = (ociName: string) => `${statePrefixes.registry}${sourceOf(ociName)}/${hashOf(ociName)}.json`;
const SWEEP_KEY = `${statePrefixes.registry}sweep.json`;
/** The source ids that may have objects: a source that leaves the config is cleaned up by it. */
const SOURCES_KEY = `${statePrefixes.registry}sources.json`;
/** State notes of removed sources cleaned up per sweep. */
const MAX_REMOVED_NOTES = 100;

/** The `/v2/` names that serve a manifest entry name (one per source whose registry and allow-list take it). */
export function ociNamesOf(config: Pick<MirrorConfig, 'sources'>, name: string): string[] {
  return candidatesOf(config, name)
    .filter((c) => c.allowed)
    .map((c) => c.ociName);
}

/** Every source pulling from the name's registry, and whether its allow-list (still) takes it. */
function candidatesOf(config: Pick<MirrorConfig, 'sources'>, name: string) {
  const out: { ociName: string; allowed: boolean }[] = [];
  for (const source of config.sources) {
    if (!name.startsWith(`${source.registry}/`)) continue;
    const repository = name.slice(source.registry.length + 1);
    const ociName = `${source.id}/${repository}`;
    if (isValidOciName(ociName)) out.push({ ociName, allowed: matchesAny(source.repositories, repository) });
  }
  return out;
}

/** Marks names whose objects must follow the version about to be written. */
export async function markPending(store: ObjectStore, names: Iterable<string>): Promise<void> {
  for (const name of names) {
    await store.put(pendingKey(name), Buffer.from(name), { contentType: 'text/plain' });
  }
}

/**
 * Brings every pending name's objects in line with the newest signed manifest, then unmarks it.
 * A name that fails keeps its mark for the next run and is counted, never thrown: the registry
 * view follows the signed manifest and must not hold back the publishes agents depend on.
 */
export async function syncPending(deps: RegistryViewDeps): Promise<RegistrySyncResult> {
  const names: { key: string; name: string }[] = [];
  for await (const marker of deps.store.list(statePrefixes.registryPending)) {
    const found = await deps.store.getBytes(marker.key, 4096);
    if (found === undefined) continue;
    names.push({ key: marker.key, name: Buffer.from(found.bytes).toString('utf8') });
  }
  const total = emptyResult();
  if (names.length === 0) return total;
  const entriesOf = await listedEntriesReader(deps.store);
  await forEachLimited(names, CONCURRENCY, async ({ key, name }) => {
    const result = await syncIsolated(deps, name, async () => entriesOf(name));
    add(total, result);
    if (result.failed === 0) await deps.store.delete(key);
  });
  if (total.written + total.deleted + total.failed > 0)
    deps.logger.info('registry view updated', { ...total });
  return total;
}

/** One name's sync with its failure caught, logged and counted. */
async function syncIsolated(
  deps: RegistryViewDeps,
  name: string,
  entries: () => Promise<readonly ManifestModule[]>,
): Promise<RegistrySyncResult> {
  try {
    return await syncName(deps, name, await entries());
  } catch (err) {
    deps.logger.error('registry view of a name could not be brought in line; retried later', {
      name,
      error: err instanceof Error ? err.message : String(err),
    });
    return { ...emptyResult(), failed: 1 };
  }
}

const emptyResult = (): RegistrySyncResult => ({ names: 0, written: 0, deleted: 0, failed: 0 });

/**
 * Compares the next slice of names (bins in prefix order, from where the last sweep stopped)
 * with their objects and repairs what differs: a name listed before the view existed, an object
 * deleted by hand, a lost state note. Stops after `maxNames` names; the next sweep goes on.
 * Then removes what sources no longer in the config left behind.
 */
export async function sweepRegistryView(deps: RegistryViewDeps, maxNames = 200): Promise<RegistrySyncResult> {
  const index = await readIndex(deps.store);
  const total = emptyResult();
  if (index === undefined) return total;
  const { root, depth } = index.payload;
  const bins = 16 ** depth;
  const saved = await readJson<{ next?: unknown }>(deps.store, SWEEP_KEY, 4096);
  const from =
    typeof saved?.next === 'string' && saved.next.length === depth ? Number.parseInt(saved.next, 16) : 0;
  const load = storeNodeLoader(deps.store);
  let bin = Number.isSafeInteger(from) && from < bins ? from : 0;
  const byName = new Map<string, ManifestModule[]>();
  for (let visited = 0; visited < bins && byName.size < maxNames; visited++) {
    const prefix = bin.toString(16).padStart(depth, '0');
    for (const m of await readBin(root, depth, prefix, load)) {
      byName.set(m.name, [...(byName.get(m.name) ?? []), m]);
    }
    bin = (bin + 1) % bins;
  }
  await forEachLimited([...byName], CONCURRENCY, async ([name, entries]) => {
    add(total, await syncIsolated(deps, name, async () => entries));
  });
  total.deleted += await cleanRemovedSources(deps);
  await deps.store.put(
    SWEEP_KEY,
    Buffer.from(JSON.stringify({ next: bin.toString(16).padStart(depth, '0') })),
    { contentType: 'application/json' },
  );
  if (total.written + total.deleted + total.failed > 0)
    deps.logger.info('registry view repaired', { ...total });
  return total;
}

/** The names whose listed entries differ between two versions of a bin. */
export function changedNames(
  before: readonly ManifestModule[],
  after: readonly ManifestModule[],
): Set<string> {
  const shape = (list: readonly ManifestModule[]) => {
    const byName = new Map<string, string[]>();
    for (const m of list) byName.set(m.name, [...(byName.get(m.name) ?? []), `${m.tag}@${m.ociDigest}`]);
    return new Map([...byName].map(([n, parts]) => [n, parts.sort().join('\n')]));
  };
  const a = shape(before);
  const b = shape(after);
  const names = new Set<string>();
  for (const [name, value] of a) if (b.get(name) !== value) names.add(name);
  for (const name of b.keys()) if (!a.has(name)) names.add(name);
  return names;
}

/** One entry name's objects, for every `/v2/` name that serves it, made to match `entries`. */
export async function syncName(
  deps: RegistryViewDeps,
  name: string,
  entries: readonly ManifestModule[],
): Promise<RegistrySyncResult> {
  const result = emptyResult();
  const served: { entry: ManifestModule; note: OciNote }[] = [];
  for (const entry of entries) {
    if (entry.name !== name) continue;
    const note =
      deps.notes === undefined
        ? await readOciNote(deps.store, name, entry.ociDigest)
        : await deps.notes.read(deps.store, name, entry.ociDigest);
    if (note !== undefined) served.push({ entry, note });
  }
  // A source whose allow-list no longer takes the name serves nothing of it: what it had goes.
  for (const { ociName, allowed } of candidatesOf(deps.config, name)) {
    const desired = allowed ? desiredObjects(deps, ociName, served) : new Map<string, Desired>();
    const r = await syncObjects(deps, ociName, desired);
    add(result, { ...r, names: allowed ? 1 : 0, failed: 0 });
  }
  return result;
}

interface Desired {
  /** What the object holds: a digest, or a hash of the body. Equal fingerprints need no write. */
  fingerprint: string;
  write(): Promise<void>;
}

/** What `/v2/<ociName>/…` should answer, as objects. */
function desiredObjects(
  deps: RegistryViewDeps,
  ociName: string,
  served: readonly { entry: ManifestModule; note: OciNote }[],
): Map<string, Desired> {
  const desired = new Map<string, Desired>();
  for (const { note } of served) {
    for (const content of note.content) {
      const key = content.manifest
        ? registryKeys.manifest(ociName, content.digest)
        : registryKeys.blob(ociName, content.digest);
      desired.set(key, { fingerprint: content.digest, write: () => writeContent(deps, key, content, true) });
    }
  }
  const tags = new Map<string, KeptContent>();
  for (const { entry, note } of served) if (entry.tag !== '') tags.set(entry.tag, note.content[0]!);
  for (const [tag, top] of tags) {
    const key = registryKeys.manifest(ociName, tag);
    desired.set(key, { fingerprint: top.digest, write: () => writeContent(deps, key, top, false) });
  }
  if (served.length === 0) return desired;
  // Code-unit order, as the embedded endpoint lists them.
  const sorted = [...tags.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const document = (key: string, list: string[], nextLast?: string) => {
    const body = Buffer.from(JSON.stringify({ name: ociName, tags: list }));
    const metadata: Record<string, string> =
      nextLast === undefined ? {} : { [registryMetadata.nextLast]: nextLast };
    desired.set(key, {
      fingerprint: hashOf(`${body.toString('utf8')}\n${nextLast ?? ''}`),
      write: () =>
        deps.registry.write(
          key,
          { bytes: body },
          { contentType: 'application/json', cacheControl: MUTABLE_CACHE, metadata },
        ),
    });
  };
  document(registryKeys.tagList(ociName), sorted);
  // Page i holds the one tag after `last` = sorted[i - 1]; it links on while tags remain.
  const page = (i: number) => {
    const tag = sorted[i];
    return tag === undefined ? [] : [tag];
  };
  const nextOf = (i: number) => (i + 1 < sorted.length ? sorted[i] : undefined);
  document(registryKeys.firstTagPage(ociName), page(0), nextOf(0));
  sorted.forEach((tag, i) => {
    document(registryKeys.tagPageAfter(ociName, tag), page(i + 1), nextOf(i + 1));
  });
  return desired;
}

/**
 * A kept manifest or blob under a `/v2/` key, from `blobs/sha256/<hex>`. Manifests are read and
 * checked against their digest (they are small, and a tag answers with them); blobs are copied
 * inside storage, and clients check them against the manifest's descriptor.
 */
async function writeContent(
  deps: RegistryViewDeps,
  key: string,
  content: KeptContent,
  byDigest: boolean,
): Promise<void> {
  const options = {
    contentType: content.mediaType,
    cacheControl: byDigest ? IMMUTABLE_CACHE : MUTABLE_CACHE,
    metadata: { [registryMetadata.digest]: content.digest },
  };
  const kept = storageKeys.blob(content.digest.slice('sha256:'.length));
  if (!content.manifest) return deps.registry.write(key, { copyFrom: kept }, options);
  const found = await deps.store.getBytes(kept, MAX_MANIFEST_BYTES);
  if (found === undefined) throw new Error(`kept manifest ${content.digest} is missing (${kept})`);
  const actual = `sha256:${createHash('sha256').update(found.bytes).digest('hex')}`;
  if (actual !== content.digest) throw new Error(`kept manifest ${content.digest} has digest ${actual}`);
  await deps.registry.write(key, { bytes: found.bytes }, options);
}

interface StateNote {
  type: typeof NOTE_TYPE;
  ociName: string;
  objects: Record<string, string>;
}

/**
 * Writes what differs and deletes what is no longer wanted. The note is widened first (every key
 * about to be written, marked unknown) and narrowed last, so a stop at any point leaves a note
 * that names every object that may exist, and the next run finishes the job.
 */
async function syncObjects(
  deps: RegistryViewDeps,
  ociName: string,
  desired: Map<string, Desired>,
): Promise<{ written: number; deleted: number }> {
  const key = stateKey(ociName);
  const note = await readJson<Partial<StateNote>>(deps.store, key, MAX_STATE_BYTES);
  // Only keys of this name: whatever else a damaged note names is never deleted from here.
  const own = `${registryKeys.prefix}${ociName}/`;
  const had: Record<string, string> =
    note?.type === NOTE_TYPE &&
    note.ociName === ociName &&
    typeof note.objects === 'object' &&
    note.objects !== null
      ? Object.fromEntries(
          Object.entries(note.objects).filter(([k, v]) => k.startsWith(own) && typeof v === 'string'),
        )
      : {};
  const toWrite = [...desired].filter(([k, d]) => had[k] !== d.fingerprint);
  const toDelete = Object.keys(had).filter((k) => !desired.has(k));
  if (toWrite.length === 0 && toDelete.length === 0) return { written: 0, deleted: 0 };
  const save = (objects: Record<string, string>) =>
    deps.store.put(key, Buffer.from(JSON.stringify({ type: NOTE_TYPE, ociName, objects })), {
      contentType: 'application/json',
    });
  if (toWrite.length > 0) {
    await recordSource(deps, sourceOf(ociName));
    const widened = { ...had };
    for (const [k] of toWrite) widened[k] = UNKNOWN;
    await save(widened);
  }
  // Digest objects before the tags and lists that lead to them; deletions the other way round.
  const order = (k: string) => (/\/(manifests|blobs)\/sha256:[0-9a-f]{64}$/.test(k) ? 0 : 1);
  toWrite.sort(([a], [b]) => order(a) - order(b));
  toDelete.sort((a, b) => order(b) - order(a));
  for (const [, d] of toWrite) await d.write();
  for (const k of toDelete) await deps.store.delete(k);
  if (desired.size === 0) await deps.store.delete(key);
  else await save(Object.fromEntries([...desired].map(([k, d]) => [k, d.fingerprint])));
  return { written: toWrite.length, deleted: toDelete.length };
}

/** Source ids already in `sources.json`, per store: read and written at most once per new id. */
const recorded = new WeakMap<ObjectStore, Promise<Set<string> | undefined>>();

/** Adds a source id to `sources.json` before its first object is written (serialised per store). */
function recordSource(deps: RegistryViewDeps, sourceId: string): Promise<Set<string>> {
  const previous = recorded.get(deps.store) ?? Promise.resolve(undefined);
  // After a failure the next caller reads the file again.
  const next = previous
    .catch(() => undefined)
    .then(async (known) => {
      const ids = known ?? new Set(await readSources(deps.store));
      if (ids.has(sourceId)) return ids;
      const merged = new Set([...(await readSources(deps.store)), ...ids, sourceId]);
      await writeSources(deps.store, merged);
      return merged;
    });
  recorded.set(deps.store, next);
  return next;
}

async function readSources(store: ObjectStore): Promise<string[]> {
  const ids = await readJson<unknown>(store, SOURCES_KEY, 64 * 1024);
  return Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string') : [];
}

function writeSources(store: ObjectStore, ids: Iterable<string>) {
  return store.put(SOURCES_KEY, Buffer.from(JSON.stringify([...ids].sort())), {
    contentType: 'application/json',
  });
}

/**
 * Deletes what sources no longer in the config left (their `/v2/` names are not routed any more):
 * each state note's objects, then the note; a source with no notes left leaves `sources.json`.
 */
async function cleanRemovedSources(deps: RegistryViewDeps): Promise<number> {
  const configured = new Set(deps.config.sources.map((source) => source.id));
  const ids = await readSources(deps.store);
  let deleted = 0;
  let budget = MAX_REMOVED_NOTES;
  const kept: string[] = [];
  for (const id of ids) {
    if (configured.has(id)) {
      kept.push(id);
      continue;
    }
    let left = false;
    for await (const object of deps.store.list(`${statePrefixes.registry}${id}/`)) {
      if (budget-- <= 0) {
        left = true;
        break;
      }
      const note = await readJson<Partial<StateNote>>(deps.store, object.key, MAX_STATE_BYTES);
      const keys = Object.keys(
        typeof note?.objects === 'object' && note.objects !== null ? note.objects : {},
      );
      for (const key of keys.filter((k) => k.startsWith(`${registryKeys.prefix}${id}/`))) {
        await deps.store.delete(key);
        deleted++;
      }
      await deps.store.delete(object.key);
    }
    if (left) kept.push(id);
  }
  if (kept.length !== ids.length) {
    await writeSources(deps.store, kept);
    recorded.delete(deps.store);
  }
  return deleted;
}

async function readJson<T>(store: ObjectStore, key: string, maxBytes: number): Promise<T | undefined> {
  const found = await store.getBytes(key, maxBytes);
  if (found === undefined) return undefined;
  try {
    return JSON.parse(Buffer.from(found.bytes).toString('utf8')) as T;
  } catch {
    return undefined;
  }
}

function add(total: RegistrySyncResult, r: RegistrySyncResult): void {
  total.names += r.names;
  total.written += r.written;
  total.deleted += r.deleted;
  total.failed += r.failed;
}

async function forEachLimited<T>(items: readonly T[], limit: number, run: (item: T) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
