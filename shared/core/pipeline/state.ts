/**
 * Reading the mirror's own published state. The newest envelope in storage is the source of
 * truth for what is listed: no database, and the publisher is the only writer.
 */
import { type DsseEnvelope, MANIFEST_PAYLOAD_TYPE, type ManifestPayload, storageKeys } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
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

export async function readManifest(store: ObjectStore, key: string): Promise<StoredManifest | undefined> {
  const found = await store.getBytes(key, MAX_OWN_MANIFEST_BYTES);
  if (found === undefined) return undefined;
  return { payload: decodeOwnEnvelope(found.bytes, key), bytes: found.bytes };
}

export function readLatestManifest(store: ObjectStore): Promise<StoredManifest | undefined> {
  return readManifest(store, storageKeys.latestManifest);
}

/** Identity of a listed entry: a (name, tag) appears once. */
export const entryKey = (name: string, tag: string): string => `${name}\u0000${tag}`;

/** What the newest manifest lists, as reconcile compares it: `<name>:<tag>` → OCI manifest digest. */
export async function listedTags(store: ObjectStore): Promise<Map<string, string>> {
  const latest = await readLatestManifest(store);
  return new Map((latest?.payload.modules ?? []).map((m) => [`${m.name}:${m.tag}`, m.ociDigest]));
}
