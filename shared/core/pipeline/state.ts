/**
 * Reading the mirror's own published state. The newest envelope in storage is the source of
 * truth for what is listed: no database, and the publisher is the only writer.
 */
import {
  type DsseEnvelope,
  MANIFEST_PAYLOAD_TYPE,
  type ManifestModule,
  type ManifestPayload,
  storageKeys,
} from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import {
  binOf,
  INDEX_PAYLOAD_TYPE,
  type IndexPayload,
  MAX_INDEX_BYTES,
  type NodeLoader,
  readBin,
  v2Keys,
  validateIndexPayload,
  walkEntries,
} from '../manifest/v2.ts';
import type { ObjectStore } from '../ports.ts';

/** Far above any real manifest; a bigger object in our own bucket means something is wrong. */
export const MAX_OWN_MANIFEST_BYTES = 64 * 1024 * 1024;

export interface StoredManifest {
  payload: ManifestPayload;
  bytes: Uint8Array;
}

/**
 * Decodes an envelope the mirror wrote itself. Our own storage is trusted, so this checks shape,
 * not signatures (agents verify those); an expired manifest must still be readable to re-sign it.
 */
export function decodeOwnEnvelope(bytes: Uint8Array, key: string): ManifestPayload {
  try {
    const envelope = JSON.parse(Buffer.from(bytes).toString('utf8')) as DsseEnvelope;
    if (envelope.payloadType !== MANIFEST_PAYLOAD_TYPE)
      throw new Error(`payloadType ${envelope.payloadType}`);
    const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as ManifestPayload;
    if (!Number.isSafeInteger(payload.version) || !Array.isArray(payload.modules))
      throw new Error('bad payload');
    return payload;
  } catch (err) {
    throw new WasmMirrorError(
      'STORAGE_FAILURE',
      `stored manifest ${key} is unreadable: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

export async function readManifest(
  store: ObjectStore,
  key: string | undefined,
): Promise<StoredManifest | undefined> {
  if (key === undefined) return undefined;
  const found = await store.getBytes(key, MAX_OWN_MANIFEST_BYTES);
  if (found === undefined) return undefined;
  return { payload: decodeOwnEnvelope(found.bytes, key), bytes: found.bytes };
}

export function readLatestManifest(store: ObjectStore): Promise<StoredManifest | undefined> {
  return readManifest(store, storageKeys.latestManifest);
}

/** The highest numbered v1 manifest's key, or undefined when none was written. */
export function highestManifestKey(store: ObjectStore): Promise<string | undefined> {
  return highestKey(store, 'manifests/', /^manifests\/([1-9][0-9]*)\.json$/, storageKeys.manifest);
}

/** The highest v2 index version's key, or undefined when none was written. */
export function highestIndexKey(store: ObjectStore): Promise<string | undefined> {
  return highestKey(
    store,
    'manifests/v2/index/',
    /^manifests\/v2\/index\/([1-9][0-9]*)\.json$/,
    v2Keys.indexVersion,
  );
}

async function highestKey(
  store: ObjectStore,
  prefix: string,
  pattern: RegExp,
  keyOf: (version: number) => string,
): Promise<string | undefined> {
  let highest = 0;
  for await (const object of store.list(prefix)) {
    const match = pattern.exec(object.key);
    if (match !== null) highest = Math.max(highest, Number(match[1]));
  }
  return highest === 0 ? undefined : keyOf(highest);
}

/**
 * The bytes of the newest signed document, found the way the publisher finds what to build on:
 * the v2 index (index.json, else its highest version), else v1's latest.json (else its highest
 * version). Undefined when nothing was ever published.
 */
export async function readNewestSignedBytes(store: ObjectStore): Promise<Uint8Array | undefined> {
  for (const key of [
    v2Keys.index,
    await highestIndexKey(store),
    storageKeys.latestManifest,
    await highestManifestKey(store),
  ]) {
    if (key === undefined) continue;
    const found = await store.getBytes(key, MAX_OWN_MANIFEST_BYTES);
    if (found !== undefined) return found.bytes;
  }
  return undefined;
}

/** Identity of a listed entry: a (name, tag) appears once. */
export const entryKey = (name: string, tag: string): string => `${name}\u0000${tag}`;

/** What the newest manifest lists, as reconcile compares it: `<name>:<tag>` → OCI manifest digest. */
export async function listedTags(store: ObjectStore): Promise<Map<string, string>> {
  return new Map((await listAllEntries(store)).map((m) => [`${m.name}:${m.tag}`, m.ociDigest]));
}

// ---------------------------------------------------------------------------------------------
// Manifest v2: the index and the tree it pins. Read from the mirror's own storage, so envelopes
// are decoded, not verified; every node is still checked against its pin and position.

export interface StoredIndex {
  payload: IndexPayload;
  bytes: Uint8Array;
}

export function decodeOwnIndex(bytes: Uint8Array, key: string): IndexPayload {
  try {
    const envelope = JSON.parse(Buffer.from(bytes).toString('utf8')) as DsseEnvelope;
    if (envelope.payloadType !== INDEX_PAYLOAD_TYPE) throw new Error(`payloadType ${envelope.payloadType}`);
    return validateIndexPayload(JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')));
  } catch (err) {
    throw new WasmMirrorError(
      'STORAGE_FAILURE',
      `stored index ${key} is unreadable: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
}

export async function readIndexAt(
  store: ObjectStore,
  key: string | undefined,
): Promise<StoredIndex | undefined> {
  if (key === undefined) return undefined;
  const found = await store.getBytes(key, MAX_INDEX_BYTES);
  if (found === undefined) return undefined;
  return { payload: decodeOwnIndex(found.bytes, key), bytes: found.bytes };
}

export function readIndex(store: ObjectStore): Promise<StoredIndex | undefined> {
  return readIndexAt(store, v2Keys.index);
}

/**
 * A loader that reads each node once: nodes are named by their sha256, so what was read stays
 * right (a missing or failed read is not remembered). For one run (a publish, a sync), not a process: it keeps everything it read.
 */
export function remembering(load: NodeLoader): NodeLoader {
  const nodes = new Map<string, Promise<Uint8Array | undefined>>();
  return (sha256) => {
    const known = nodes.get(sha256);
    if (known !== undefined) return known;
    const node = load(sha256);
    nodes.set(sha256, node);
    // A node not there (yet) is asked for again next time.
    void node.then(
      (bytes) => bytes === undefined && nodes.delete(sha256),
      () => nodes.delete(sha256),
    );
    return node;
  };
}

/** Nodes from the mirror's own storage. */
export function storeNodeLoader(store: ObjectStore): NodeLoader {
  return async (sha256) => (await store.getBytes(v2Keys.node(sha256), MAX_NODE_BYTES))?.bytes;
}
const MAX_NODE_BYTES = 8 * 1024 * 1024;

/** What is listed now, in v1's payload shape: from the v2 tree, or from a v1-only mirror. */
export interface Listing {
  mirror: string;
  version: number;
  issuedAt: string;
  expiresAt: string;
  entries: number;
}

/** The manifest in force, without its entries (cheap: one small object). */
export async function readListingHead(store: ObjectStore): Promise<Listing | undefined> {
  const index = await readIndex(store);
  if (index !== undefined) {
    const { mirror, version, issuedAt, expiresAt, entries } = index.payload;
    return { mirror, version, issuedAt, expiresAt, entries };
  }
  const v1 = await readLatestManifest(store);
  if (v1 === undefined) return undefined;
  const { mirror, version, issuedAt, expiresAt, modules } = v1.payload;
  return { mirror, version, issuedAt, expiresAt, entries: modules.length };
}

/** The listed entries of one name: one bin read, whatever the mirror's size. */
export async function listedEntriesOf(store: ObjectStore, name: string): Promise<ManifestModule[]> {
  return (await listedEntriesReader(store))(name);
}

/**
 * The listed entries of any name in one listing: the index (or v1's manifest) is read once, each
 * name then costs its bin, and a page read for one name is not read again for the next.
 */
export async function listedEntriesReader(
  store: ObjectStore,
): Promise<(name: string) => Promise<ManifestModule[]>> {
  const index = await readIndex(store);
  if (index !== undefined) {
    const { root, depth } = index.payload;
    const load = remembering(storeNodeLoader(store));
    return async (name) =>
      (await readBin(root, depth, binOf(name, depth), load)).filter((m) => m.name === name);
  }
  const modules = (await readLatestManifest(store))?.payload.modules ?? [];
  return async (name) => modules.filter((m) => m.name === name);
}

/** Every listed entry (a whole walk: status pages, reconcile, `verify`). */
export async function listAllEntries(store: ObjectStore): Promise<ManifestModule[]> {
  const index = await readIndex(store);
  if (index === undefined) return (await readLatestManifest(store))?.payload.modules ?? [];
  const out: ManifestModule[] = [];
  for await (const m of walkEntries(index.payload.root, index.payload.depth, storeNodeLoader(store)))
    out.push(m);
  return out;
}
