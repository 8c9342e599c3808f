/**
 * Deleting module bytes no manifest lists any more, safely: an agent may hold any manifest until
 * it expires, so a module leaves storage only after it has been unlisted for longer than a
 * manifest lives (`manifestTtl`) plus a grace period. The first pass that finds a module
 * unlisted notes the time (`state/unlisted/<sha256>`); a later pass deletes it once that time is
 * old enough and it is still unlisted. A module listed again loses its note.
 *
 * Kept upstream content (`blobs/sha256/`) follows the same rule through its `oci` notes: a note
 * no listed entry has is marked (`state/unlisted-oci/<note hash>`), and once that is old enough
 * the note goes, and with it each blob no other note still needs. A blob may be shared (the same
 * config or layer under several names or tags); who uses it is in its reference markers
 * (`state/oci-refs/<hex>/`, written at intake), so a pass reads only the notes it deletes, never
 * one per listed entry.
 */
import { type ManifestModule, SHA256_HEX } from '../domain.ts';
import { metricNames } from '../metrics.ts';
import type { Clock, Logger, Metrics, ObjectInfo, ObjectStore } from '../ports.ts';
import { statePrefixes, storageKeys } from '../storage-keys.ts';
import { ociNoteHash, readOciNoteAt } from './oci-view.ts';
import { listAllEntries } from './state.ts';

export interface GarbageDeps {
  store: ObjectStore;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  config: { mirror: { manifestTtlMs: number; gcGraceMs: number } };
}

export interface GarbageResult {
  listed: number;
  noted: number;
  deleted: number;
  /** `oci` notes found unlisted for the first time. */
  notesNoted: number;
  notesDeleted: number;
  blobsDeleted: number;
}

const MODULE_KEY = /^modules\/sha256\/([0-9a-f]{64})\.wasm$/;
const NOTE_KEY = /^state\/oci\/([0-9a-f]{64})\.json$/;
/**
 * Notes deleted per pass: each costs a few requests per blob, within the publisher's deadline.
 * The rest wait for the next pass, which is always safe.
 */
const MAX_NOTES_DELETED = 100;
/** Far above the blobs of one note. */
const MAX_MARK_BYTES = 1024 * 1024;

export async function collectGarbage(deps: GarbageDeps): Promise<GarbageResult> {
  const now = deps.clock.now().getTime();
  const entries = await listAllEntries(deps.store);
  const listed = new Set(entries.map((m) => m.sha256));
  const noted = new Map<string, number>();
  for await (const note of deps.store.list(statePrefixes.unlisted)) {
    const sha = note.key.slice(statePrefixes.unlisted.length);
    const found = await deps.store.getBytes(note.key, 1024);
    const since = Date.parse(found === undefined ? '' : Buffer.from(found.bytes).toString('utf8').trim());
    noted.set(sha, Number.isNaN(since) ? now : since);
  }
  const result = { listed: listed.size, noted: 0, deleted: 0 };
  const keepFor = deps.config.mirror.manifestTtlMs + deps.config.mirror.gcGraceMs;
  for await (const object of deps.store.list('modules/sha256/')) {
    const sha = MODULE_KEY.exec(object.key)?.[1];
    if (sha === undefined) continue;
    const since = noted.get(sha);
    noted.delete(sha);
    if (listed.has(sha)) {
      if (since !== undefined) await deps.store.delete(storageKeys.unlistedNote(sha));
      continue;
    }
    if (since === undefined) {
      await deps.store.put(storageKeys.unlistedNote(sha), Buffer.from(new Date(now).toISOString()), {
        contentType: 'text/plain',
      });
      result.noted++;
    } else if (now - since > keepFor) {
      await deps.store.delete(object.key);
      await deps.store.delete(storageKeys.unlistedNote(sha));
      result.deleted++;
    }
  }
  // Notes for modules already gone.
  for (const sha of noted.keys()) await deps.store.delete(storageKeys.unlistedNote(sha));
  if (result.deleted > 0) deps.metrics.count(metricNames.modulesDeleted, {}, result.deleted);
  const content = await collectKeptContent(deps, entries, now, keepFor);
  if (content.blobsDeleted > 0) deps.metrics.count(metricNames.blobsDeleted, {}, content.blobsDeleted);
  deps.logger.info('garbage collected', { ...result, ...content });
  return { ...result, ...content };
}

/**
 * Since when a note is unlisted and, once its deletion has begun, the blobs it reached: a pass
 * that stops after deleting the note leaves the next one what it still has to release.
 */
interface UnlistedMark {
  since: number;
  blobs: string[];
}

/** What decides, during one pass, whether a reference marker still keeps its blob. */
interface Users {
  /** Hashes of the listed entries' notes. */
  listed: Set<string>;
  /** Hashes of the notes stored when the pass began, less those it deleted. */
  notes: Set<string>;
  now: number;
  keepFor: number;
}

async function collectKeptContent(
  deps: GarbageDeps,
  entries: readonly ManifestModule[],
  now: number,
  keepFor: number,
): Promise<Pick<GarbageResult, 'notesNoted' | 'notesDeleted' | 'blobsDeleted'>> {
  const users: Users = {
    listed: new Set(entries.map((m) => ociNoteHash(m.name, m.ociDigest))),
    notes: new Set(),
    now,
    keepFor,
  };
  const marks = new Map<string, UnlistedMark>();
  for await (const marker of deps.store.list(statePrefixes.unlistedOci)) {
    const hash = marker.key.slice(statePrefixes.unlistedOci.length);
    marks.set(hash, await readMark(deps.store, marker.key, now));
  }
  const counts = { notesNoted: 0, notesDeleted: 0, blobsDeleted: 0 };
  const due: { key: string; hash: string; since: number }[] = [];
  for await (const object of deps.store.list(statePrefixes.oci)) {
    const hash = NOTE_KEY.exec(object.key)?.[1];
    if (hash === undefined) continue;
    users.notes.add(hash);
    const mark = marks.get(hash);
    marks.delete(hash);
    if (users.listed.has(hash)) {
      if (mark !== undefined) await deps.store.delete(storageKeys.unlistedOciNote(hash));
    } else if (mark === undefined) {
      await writeMark(deps.store, hash, { since: now, blobs: [] });
      counts.notesNoted++;
    } else if (now - mark.since > keepFor) {
      due.push({ key: object.key, hash, since: mark.since });
    }
  }
  let budget = MAX_NOTES_DELETED;
  // Marks whose note is gone: a deletion that stopped half way goes on; any other mark is dropped.
  for (const [hash, mark] of marks) {
    if (mark.blobs.length > 0 && !users.listed.has(hash)) {
      if (budget === 0) continue;
      budget--;
      counts.blobsDeleted += await releaseBlobs(deps, hash, mark.blobs, users);
    }
    await deps.store.delete(storageKeys.unlistedOciNote(hash));
  }
  for (const { key, hash, since } of due.slice(0, budget)) {
    const note = await readOciNoteAt(deps.store, key);
    const blobs = [...new Set(note?.content.map((c) => c.digest.slice('sha256:'.length)))];
    if (blobs.length > 0) await writeMark(deps.store, hash, { since, blobs });
    // The note first: from here on neither the registry API nor intake relies on what it names.
    await deps.store.delete(key);
    users.notes.delete(hash);
    counts.notesDeleted++;
    counts.blobsDeleted += await releaseBlobs(deps, hash, blobs, users);
    await deps.store.delete(storageKeys.unlistedOciNote(hash));
  }
  return counts;
}

/** Drops a deleted note's reference to each blob, and deletes the blobs nobody needs any more. */
async function releaseBlobs(
  deps: GarbageDeps,
  noteHash: string,
  blobs: readonly string[],
  users: Users,
): Promise<number> {
  let deleted = 0;
  for (const hex of blobs) {
    await deps.store.delete(storageKeys.blobRef(hex, noteHash));
    if (await unused(deps.store, hex, users)) {
      await deps.store.delete(storageKeys.blob(hex));
      await deps.store.delete(storageKeys.blobCreated(hex));
      deleted++;
    }
  }
  return deleted;
}

/**
 * True when no reference keeps the blob and it was stored with references (without its
 * `created` marker, a note kept before references existed may reach it). A reference keeps it
 * while its note is listed, still stored, or was written too recently to tell from an intake
 * still under way; any other was left by an intake or a deletion that stopped, and is dropped.
 * The listing stops at the first reference that keeps the blob, so a blob shared by many listed
 * entries costs one request.
 */
async function unused(store: ObjectStore, hex: string, users: Users): Promise<boolean> {
  const prefix = storageKeys.blobRefs(hex);
  let created = false;
  let needed = false;
  const stale: string[] = [];
  for await (const ref of store.list(prefix)) {
    const user = ref.key.slice(prefix.length);
    if (ref.key === storageKeys.blobCreated(hex)) created = true;
    else if (keeps(ref, user, users)) {
      needed = true;
      break;
    } else stale.push(ref.key);
  }
  for (const key of stale) await store.delete(key);
  return created && !needed;
}

function keeps(ref: ObjectInfo, user: string, users: Users): boolean {
  if (users.listed.has(user) || users.notes.has(user)) return true;
  return ref.lastModified === undefined || users.now - ref.lastModified.getTime() <= users.keepFor;
}

async function readMark(store: ObjectStore, key: string, now: number): Promise<UnlistedMark> {
  const found = await store.getBytes(key, MAX_MARK_BYTES);
  const text = found === undefined ? '' : Buffer.from(found.bytes).toString('utf8');
  const [first = '', ...rest] = text.split('\n');
  const since = Date.parse(first.trim());
  return { since: Number.isNaN(since) ? now : since, blobs: rest.filter((line) => SHA256_HEX.test(line)) };
}

/** The time on the first line, then one blob hex per line. */
async function writeMark(store: ObjectStore, hash: string, mark: UnlistedMark): Promise<void> {
  const text = [new Date(mark.since).toISOString(), ...mark.blobs].join('\n');
  await store.put(storageKeys.unlistedOciNote(hash), Buffer.from(text), { contentType: 'text/plain' });
}
