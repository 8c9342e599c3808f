/**
 * Reading what a mirror lists, verified, for the commands that print it (`verify`, `wasmplugin`):
 * a v1 manifest envelope, or a v2 index plus the nodes it pins, fetched from the mirror URL (or
 * read from a data directory) and each checked against its pin. The result is v1's payload shape,
 * so scripts written against v1 keep working.
 */
import { dirname, join } from 'node:path';
import { HttpClient, readManifestSource } from '../agent/index.ts';
import { MANIFEST_TYPE, type ManifestModule, type ManifestPayload } from '../core/domain.ts';
import { WasmMirrorError } from '../core/errors.ts';
import {
  binOf,
  INDEX_PAYLOAD_TYPE,
  MAX_INDEX_BYTES,
  type NodeLoader,
  readBin,
  type TrustedKey,
  v2Keys,
  verifyIndex,
  verifyManifest,
  walkEntries,
  withInlineNodes,
} from '../core/manifest/index.ts';
import { MAX_BIN_BYTES } from '../core/manifest/v2.ts';

export interface VerifiedListing {
  payload: ManifestPayload;
  keyid: string;
  format: 'v1' | 'v2';
}

export interface ListingOptions {
  trustedKeys: readonly TrustedKey[];
  mirrorName?: string | undefined;
  now?: Date;
  /** Only these names (v2 reads just their bins); all entries when absent. */
  names?: readonly string[];
  /** Where a local index file's nodes are fetched from, when it does not sit in a data directory. */
  mirrorUrl?: string | undefined;
}

/** Is this envelope a v2 index? (Looks at payloadType only; verification comes after.) */
export function isIndexEnvelope(bytes: Uint8Array): boolean {
  try {
    return (
      (JSON.parse(new TextDecoder().decode(bytes)) as { payloadType?: unknown }).payloadType ===
      INDEX_PAYLOAD_TYPE
    );
  } catch {
    return false;
  }
}

export async function readVerifiedListing(
  source: string,
  bytes: Uint8Array,
  options: ListingOptions,
): Promise<VerifiedListing> {
  const now = options.now ?? new Date();
  const base = {
    trustedKeys: options.trustedKeys,
    now,
    ...(options.mirrorName ? { mirrorName: options.mirrorName } : {}),
  };
  if (!isIndexEnvelope(bytes)) {
    const v = verifyManifest(bytes, base);
    const modules =
      options.names === undefined
        ? v.payload.modules
        : v.payload.modules.filter((m) => options.names!.includes(m.name));
    return { payload: { ...v.payload, modules }, keyid: v.keyid, format: 'v1' };
  }
  const v = verifyIndex(bytes, base);
  const { root, depth } = v.payload;
  // One client for every node: a walk reads hundreds of them from the same mirror.
  const client = new HttpClient({ maxSockets: 1, idleTimeoutMs: 30_000 });
  const modules: ManifestModule[] = [];
  try {
    const load = withInlineNodes(bytes, nodeLoaderFor(source, options.mirrorUrl, client));
    if (options.names === undefined) {
      for await (const m of walkEntries(root, depth, load)) modules.push(m);
    } else {
      for (const prefix of new Set(options.names.map((n) => binOf(n, depth)))) {
        modules.push(
          ...(await readBin(root, depth, prefix, load)).filter((m) => options.names!.includes(m.name)),
        );
      }
    }
  } finally {
    client.close();
  }
  const { mirror, version, issuedAt, expiresAt } = v.payload;
  return {
    payload: { type: MANIFEST_TYPE, mirror, version, issuedAt, expiresAt, modules },
    keyid: v.keyid,
    format: 'v2',
  };
}

/** The newest listing of a mirror: v2 if it publishes it, else v1. */
export async function readMirrorListing(
  mirrorUrl: string,
  options: ListingOptions,
): Promise<VerifiedListing> {
  const base = mirrorUrl.replace(/\/+$/, '');
  const indexUrl = `${base}/${v2Keys.index}`;
  let bytes: Uint8Array;
  try {
    bytes = await readManifestSource(indexUrl, MAX_INDEX_BYTES);
  } catch (err) {
    if (!(err instanceof WasmMirrorError && err.code === 'NOT_FOUND')) throw err;
    const v1 = `${base}/manifests/latest.json`;
    return readVerifiedListing(v1, await readManifestSource(v1), options);
  }
  return readVerifiedListing(indexUrl, bytes, options);
}

/**
 * Where the nodes of an index live: beside it under the same mirror URL, under the data directory
 * a local index file sits in, or under `--mirror-url`.
 */
function nodeLoaderFor(source: string, mirrorUrl: string | undefined, client: HttpClient): NodeLoader {
  const v2Path = /manifests\/v2\/index(?:\/[1-9][0-9]*)?\.json$/;
  let root: string | undefined;
  if (/^https?:\/\//i.test(source) && v2Path.test(source)) root = source.replace(v2Path, '');
  else if (mirrorUrl !== undefined) root = `${mirrorUrl.replace(/\/+$/, '')}/`;
  else if (v2Path.test(source)) root = `${source.replace(v2Path, '')}`;
  if (root === undefined) {
    throw new WasmMirrorError(
      'USAGE',
      `${source} is a v2 index; its nodes are read from the mirror: pass --mirror-url, or the index's URL`,
    );
  }
  const isUrl = /^https?:\/\//i.test(root);
  return async (sha256) => {
    const where = isUrl
      ? `${root}${v2Keys.node(sha256)}`
      : join(root === '' ? '.' : dirname(`${root}x`), v2Keys.node(sha256));
    try {
      return await readManifestSource(where, MAX_BIN_BYTES, client);
    } catch (err) {
      if (err instanceof WasmMirrorError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
  };
}
