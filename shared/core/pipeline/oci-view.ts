/**
 * The mirror seen as a read-only registry: what a `/v2/<sourceId>/<repository>/…` request may
 * be answered with. The newest signed manifest decides. A tag resolves only to the manifest
 * digest listed for it; a digest is served only when a listed entry reaches it (the entry's
 * manifest, the child an index resolved to, their config and layers), and what an entry reaches
 * is the note intake wrote after keeping those bytes, so nothing here ever asks upstream.
 */
import { createHash } from 'node:crypto';
import type { MirrorConfig } from '../config.ts';
import type { ManifestModule } from '../domain.ts';
import { SHA256_DIGEST } from '../domain.ts';
import { isWasmMirrorError } from '../errors.ts';
import { matchesAny } from '../glob.ts';
import { v2Keys } from '../manifest/v2.ts';
import { isValidRepository, isValidTag } from '../oci/reference.ts';
import type { ObjectStore, VerifiedContent } from '../ports.ts';
import type { SourceConfig } from '../sources/types.ts';
import { statePrefixes, storageKeys } from '../storage-keys.ts';
import { listedEntriesOf } from './state.ts';

export const OCI_NOTE_TYPE = 'wasm-mirror.oci-content/v1';

/** One kept manifest or blob, as a note lists it. */
export interface KeptContent {
  digest: string;
  mediaType: string;
  size: number;
  manifest: boolean;
}

/** `state/oci/<sha256(name@digest)>.json`: what one mirrored manifest digest reaches. */
export interface OciNote {
  type: typeof OCI_NOTE_TYPE;
  /** The manifest entry's name, `<registry>/<repository>`. */
  name: string;
  /** The manifest digest the entry lists (`ociDigest`); the first of `content`. */
  digest: string;
  content: KeptContent[];
}

/** Far above a real note (a manifest, a child, a config, a few layers). */
const MAX_NOTE_BYTES = 256 * 1024;

export function ociNoteOf(name: string, digest: string, content: readonly VerifiedContent[]): OciNote {
  return {
    type: OCI_NOTE_TYPE,
    name,
    digest,
    content: content.map(({ digest: d, mediaType, size, manifest }) => ({
      digest: d,
      mediaType,
      size,
      manifest,
    })),
  };
}

/** Written once the bytes it names are stored; create-only, since the same digest reaches the same bytes. */
export async function writeOciNote(store: ObjectStore, note: OciNote): Promise<void> {
  try {
    await store.create(
      storageKeys.digestNote('oci', note.name, note.digest),
      Buffer.from(JSON.stringify(note)),
      { contentType: 'application/json' },
    );
  } catch (err) {
    if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) throw err;
  }
}

/** The hex in a note's key (`state/oci/<hex>.json`): how reference markers and garbage collection name a note. */
export function ociNoteHash(name: string, digest: string): string {
  return storageKeys.digestNote('oci', name, digest).slice(statePrefixes.oci.length, -'.json'.length);
}

/** The note for a listed digest; undefined when intake kept nothing for it (or wrote it differently). */
export async function readOciNote(
  store: ObjectStore,
  name: string,
  digest: string,
): Promise<OciNote | undefined> {
  const note = await readOciNoteAt(store, storageKeys.digestNote('oci', name, digest));
  return note?.name === name && note.digest === digest ? note : undefined;
}

/** The note stored under `key`, whichever digest it is about; undefined when absent or malformed. */
export async function readOciNoteAt(store: ObjectStore, key: string): Promise<OciNote | undefined> {
  const found = await store.getBytes(key, MAX_NOTE_BYTES);
  if (found === undefined) return undefined;
  let note: Partial<OciNote>;
  try {
    note = JSON.parse(Buffer.from(found.bytes).toString('utf8')) as Partial<OciNote>;
  } catch {
    return undefined;
  }
  const valid =
    note.type === OCI_NOTE_TYPE &&
    typeof note.name === 'string' &&
    typeof note.digest === 'string' &&
    Array.isArray(note.content) &&
    note.content.every(
      (c) =>
        typeof c === 'object' &&
        c !== null &&
        typeof c.digest === 'string' &&
        SHA256_DIGEST.test(c.digest) &&
        typeof c.mediaType === 'string' &&
        Number.isSafeInteger(c.size) &&
        typeof c.manifest === 'boolean',
    ) &&
    note.content[0]?.digest === note.digest;
  return valid ? (note as OciNote) : undefined;
}

/** Where a `/v2/` name leads: its source and the manifest name its entries carry. */
export interface OciRepository {
  /** `<sourceId>/<repository>`, as requested. */
  ociName: string;
  source: SourceConfig;
  repository: string;
  /** `<registry>/<repository>`, the manifest entries' name. */
  name: string;
}

export type OciLookup<T> =
  | { found: true; value: T }
  | { found: false; code: 'NAME_UNKNOWN' | 'MANIFEST_UNKNOWN' | 'BLOB_UNKNOWN' };

export interface OciViewOptions {
  store: ObjectStore;
  config: Pick<MirrorConfig, 'sources'>;
  /** Notes kept in memory (they never change once written). @default 4096 */
  maxCachedNotes?: number;
}

/** True for a name the distribution grammar allows, at most 255 characters. */
export function isValidOciName(name: string): boolean {
  return name.length <= 255 && name.includes('/') && isValidRepository(name);
}

export class OciView {
  readonly #store: ObjectStore;
  readonly #sources: readonly SourceConfig[];
  readonly #notes = new Map<string, OciNote>();
  readonly #maxNotes: number;
  /** Entries per name, for the listing whose validator is `#listingTag`. */
  #entries = new Map<string, ManifestModule[]>();
  #listingTag: string | undefined;

  constructor(options: OciViewOptions) {
    this.#store = options.store;
    this.#sources = options.config.sources;
    this.#maxNotes = options.maxCachedNotes ?? 4096;
  }

  /**
   * `<sourceId>/<repository>` → the source and entry name; undefined when no source has that id
   * or the repository is outside its allow-list (the caller has checked the name's grammar).
   */
  repository(ociName: string): OciRepository | undefined {
    const slash = ociName.indexOf('/');
    const sourceId = ociName.slice(0, slash);
    const repository = ociName.slice(slash + 1);
    const source = this.#sources.find((s) => s.id === sourceId);
    if (source === undefined || !matchesAny(source.repositories, repository)) return undefined;
    return { ociName, source, repository, name: `${source.registry}/${repository}` };
  }

  /** The listed tags whose content was kept, in lexical order; NAME_UNKNOWN when there are none. */
  async tags(ociName: string): Promise<OciLookup<string[]>> {
    const served = await this.#served(ociName);
    if (!served.found) return served;
    const tags = new Set<string>();
    for (const { entry } of served.value) if (entry.tag !== '') tags.add(entry.tag);
    return { found: true, value: [...tags].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) };
  }

  /** A manifest by tag (what the signed manifest lists for it) or by digest (one a listed entry reaches). */
  async manifest(ociName: string, reference: string): Promise<OciLookup<KeptContent>> {
    const served = await this.#served(ociName);
    if (!served.found) return served;
    if (!reference.startsWith('sha256:')) {
      if (!isValidTag(reference)) return { found: false, code: 'MANIFEST_UNKNOWN' };
      const listed = served.value.find(({ entry }) => entry.tag === reference);
      const top = listed?.note.content[0];
      return top === undefined ? { found: false, code: 'MANIFEST_UNKNOWN' } : { found: true, value: top };
    }
    const reached = reach(served.value, reference);
    return reached?.manifest === true
      ? { found: true, value: reached }
      : { found: false, code: 'MANIFEST_UNKNOWN' };
  }

  /** A blob (or manifest) by digest, when a listed entry of this name reaches it. */
  async blob(ociName: string, digest: string): Promise<OciLookup<KeptContent>> {
    const served = await this.#served(ociName);
    if (!served.found) return served;
    const reached = reach(served.value, digest);
    return reached === undefined ? { found: false, code: 'BLOB_UNKNOWN' } : { found: true, value: reached };
  }

  /** The name's listed entries that have kept content, each with its note. */
  async #served(ociName: string): Promise<OciLookup<{ entry: ManifestModule; note: OciNote }[]>> {
    const repo = this.repository(ociName);
    if (repo === undefined) return { found: false, code: 'NAME_UNKNOWN' };
    const served: { entry: ManifestModule; note: OciNote }[] = [];
    for (const entry of await this.#listed(repo.name)) {
      const note = await this.#note(repo.name, entry.ociDigest);
      if (note !== undefined) served.push({ entry, note });
    }
    return served.length === 0 ? { found: false, code: 'NAME_UNKNOWN' } : { found: true, value: served };
  }

  /** One bin read per name while the listing stays the same; a new publish starts afresh. */
  async #listed(name: string): Promise<ManifestModule[]> {
    const index = await this.#store.head(v2Keys.index);
    const latest = index === undefined ? await this.#store.head(storageKeys.latestManifest) : undefined;
    const tag = index?.etag ?? (latest === undefined ? undefined : `v1:${latest.etag}`);
    if (tag !== this.#listingTag) {
      this.#entries = new Map();
      this.#listingTag = tag;
    }
    const cached = this.#entries.get(name);
    if (cached !== undefined) return cached;
    const entries = await listedEntriesOf(this.#store, name);
    if (this.#entries.size >= this.#maxNotes) this.#entries.clear();
    this.#entries.set(name, entries);
    return entries;
  }

  async #note(name: string, digest: string): Promise<OciNote | undefined> {
    const key = createHash('sha256').update(`${name}@${digest}`).digest('hex');
    const cached = this.#notes.get(key);
    if (cached !== undefined) return cached;
    const note = await readOciNote(this.#store, name, digest);
    // Only notes that exist are remembered: a missing one may be written by the next intake.
    if (note !== undefined) {
      if (this.#notes.size >= this.#maxNotes) this.#notes.delete(this.#notes.keys().next().value!);
      this.#notes.set(key, note);
    }
    return note;
  }
}

function reach(served: { note: OciNote }[], digest: string): KeptContent | undefined {
  if (!SHA256_DIGEST.test(digest)) return undefined;
  for (const { note } of served) {
    const found = note.content.find((c) => c.digest === digest);
    if (found !== undefined) return found;
  }
  return undefined;
}
