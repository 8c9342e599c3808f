/**
 * Manifest v2 (docs/manifest-v2.md): a small signed index pins the root of a 16-ary Merkle tree
 * whose leaves ("bins") hold the entries whose name hashes into them. Every node is JCS JSON
 * named by its sha256, so a change rewrites one bin and the pages on its path, and an agent
 * reads only what changed on the paths to the bins it selects.
 */
import { createHash } from 'node:crypto';
import type { ManifestModule } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { decodeUtf8Strict, parseStrictJson } from '../strict-json.ts';
import { canonicalize, canonicalizeToBytes } from './jcs.ts';
import { compareModules, fieldChecks, validateModuleList } from './payload.ts';
import { type SignedKind, type VerifiedDocument, type VerifyOptions, verifySigned } from './verify.ts';

export const INDEX_PAYLOAD_TYPE = 'application/vnd.wasm-mirror.index.v2+json';
export const INDEX_TYPE = 'wasm-mirror.index/v2';
export const PAGE_TYPE = 'wasm-mirror.page/v2';
export const BIN_TYPE = 'wasm-mirror.bin/v2';
export const FANOUT = 16;
/** Entries per bin the depth aims for, on average. */
export const BIN_TARGET = 16;
export const MAX_DEPTH = 8;
/** Inline nodes stay under this (canonical bytes, all together), so the index stays small. */
export const MAX_INLINE_NODE_BYTES = 16 * 1024;
const MAX_INLINE_NODES = 16;
/** Decoded size caps: a page is 16 hashes; a bin holds what hashes into it. */
export const MAX_PAGE_BYTES = 4 * 1024;
export const MAX_BIN_BYTES = 4 * 1024 * 1024;
export const MAX_INDEX_BYTES = 64 * 1024;

/** A child pin: the sha256 (hex) of a node, or null for an empty subtree. */
export type Pin = string | null;

export interface IndexPayload {
  type: typeof INDEX_TYPE;
  mirror: string;
  version: number;
  issuedAt: string;
  expiresAt: string;
  /** Entries in the whole tree. */
  entries: number;
  /** Levels of pages below the index; bins sit at this depth, named by `depth` hex digits. */
  depth: number;
  /** The root page's 16 children, inline. */
  root: Pin[];
}

export interface PageNode {
  type: typeof PAGE_TYPE;
  prefix: string;
  children: Pin[];
}

export interface BinNode {
  type: typeof BIN_TYPE;
  prefix: string;
  modules: ManifestModule[];
}

export type TreeNode = PageNode | BinNode;

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Where a document lives in storage; the same path under the mirror URL. */
export const v2Keys = {
  index: 'manifests/v2/index.json',
  indexVersion: (version: number) => `manifests/v2/index/${version}.json`,
  node: (sha256: string) => `manifests/v2/nodes/sha256/${sha256}.json`,
} as const;

/** Hex sha256 of a module name: its bin is the first `depth` digits. */
export function nameHash(name: string): string {
  return createHash('sha256').update(name, 'utf8').digest('hex');
}

export function binOf(name: string, depth: number): string {
  return nameHash(name).slice(0, depth);
}

/** The depth that keeps bins near BIN_TARGET entries; never below `atLeast` (depth only grows). */
export function depthFor(entries: number, atLeast = 1): number {
  let depth = 1;
  while (depth < MAX_DEPTH && FANOUT ** depth * BIN_TARGET < entries) depth++;
  return Math.max(depth, atLeast);
}

export function encodeNode(node: TreeNode): { bytes: Uint8Array; sha256: string } {
  const bytes = canonicalizeToBytes(node);
  return { bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
}

function nodeError(code: 'NODE_HASH_MISMATCH' | 'NODE_INVALID', message: string): WasmMirrorError {
  return new WasmMirrorError(code, message);
}

/**
 * Checks a node fetched for the position `prefix` of a tree of `depth` against its pin: size,
 * hash, strict canonical JSON, type and prefix for the position, and (bins) that every entry
 * hashes into the bin. A node pinned by a verified index and passing this is what the publisher
 * wrote for this version, at this place.
 */
export function decodeNode(bytes: Uint8Array, pin: string, prefix: string, depth: number): TreeNode {
  const isBin = prefix.length === depth;
  const cap = isBin ? MAX_BIN_BYTES : MAX_PAGE_BYTES;
  if (bytes.byteLength > cap)
    throw nodeError('NODE_INVALID', `node ${prefix || '(root)'} is over ${cap} bytes`);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== pin) {
    throw nodeError('NODE_HASH_MISMATCH', `node ${prefix} has sha256 ${actual}, the index chain pins ${pin}`);
  }
  let parsed: unknown;
  let text: string;
  try {
    text = decodeUtf8Strict(bytes);
    parsed = parseStrictJson(text, { maxDepth: 8 });
  } catch (err) {
    throw nodeError('NODE_INVALID', `node ${prefix} is not strict JSON: ${(err as Error).message}`);
  }
  if (canonicalize(parsed) !== text) throw nodeError('NODE_INVALID', `node ${prefix} is not canonical JSON`);
  const { isPlainObject } = fieldChecks;
  if (!isPlainObject(parsed)) throw nodeError('NODE_INVALID', `node ${prefix} is not an object`);
  if (parsed.prefix !== prefix)
    throw nodeError('NODE_INVALID', `node for ${prefix} says it is ${String(parsed.prefix)}`);
  try {
    if (isBin) {
      fieldChecks.exactFields(parsed, ['type', 'prefix', 'modules'], [], 'bin');
      if (parsed.type !== BIN_TYPE || !Array.isArray(parsed.modules)) throw new Error('not a bin');
      const modules = validateModuleList(parsed.modules, `bin ${prefix} modules`);
      for (const m of modules) {
        if (binOf(m.name, depth) !== prefix)
          throw new Error(`entry ${m.name} does not hash into bin ${prefix}`);
      }
      return { type: BIN_TYPE, prefix, modules };
    }
    fieldChecks.exactFields(parsed, ['type', 'prefix', 'children'], [], 'page');
    if (parsed.type !== PAGE_TYPE) throw new Error('not a page');
    return { type: PAGE_TYPE, prefix, children: checkPins(parsed.children, `page ${prefix}`) };
  } catch (err) {
    if (err instanceof WasmMirrorError && err.code !== 'SCHEMA_ERROR') throw err;
    throw nodeError('NODE_INVALID', `node ${prefix}: ${(err as Error).message}`);
  }
}

function checkPins(value: unknown, where: string): Pin[] {
  if (!Array.isArray(value) || value.length !== FANOUT)
    throw new Error(`${where} must pin exactly ${FANOUT} children`);
  return value.map((pin, i) => {
    if (pin === null || (typeof pin === 'string' && SHA256_HEX.test(pin))) return pin as Pin;
    throw new Error(`${where} child ${i} is not a sha256 or null`);
  });
}

export function validateIndexPayload(value: unknown): IndexPayload {
  const { isPlainObject, exactFields, text, count, time, schemaError } = fieldChecks;
  if (!isPlainObject(value)) throw schemaError('index must be an object');
  exactFields(
    value,
    ['type', 'mirror', 'version', 'issuedAt', 'expiresAt', 'entries', 'depth', 'root'],
    [],
    'index',
  );
  if (value.type !== INDEX_TYPE) throw schemaError(`index type must be "${INDEX_TYPE}"`);
  const payload: IndexPayload = {
    type: INDEX_TYPE,
    mirror: text(value, 'mirror', 'index'),
    version: count(value, 'version', 'index'),
    issuedAt: time(value, 'issuedAt', 'index'),
    expiresAt: time(value, 'expiresAt', 'index'),
    entries: count(value, 'entries', 'index'),
    depth: count(value, 'depth', 'index'),
    root: [],
  };
  if (Date.parse(payload.expiresAt) <= Date.parse(payload.issuedAt))
    throw schemaError('expiresAt must be after issuedAt');
  if (payload.depth < 1 || payload.depth > MAX_DEPTH)
    throw schemaError(`index depth must be 1 to ${MAX_DEPTH}`);
  try {
    payload.root = checkPins(value.root, 'index root');
  } catch (err) {
    throw schemaError((err as Error).message);
  }
  return payload;
}

export const indexKind: SignedKind<IndexPayload> = {
  payloadType: INDEX_PAYLOAD_TYPE,
  validate: validateIndexPayload,
  what: 'index',
};

/** Verifies a v2 index envelope exactly as a v1 manifest is verified (size capped at 64 KiB). */
export function verifyIndex(bytes: Uint8Array, opts: VerifyOptions): VerifiedDocument<IndexPayload> {
  return verifySigned(bytes, indexKind, {
    ...opts,
    maxBytes: Math.min(opts.maxBytes ?? MAX_INDEX_BYTES, MAX_INDEX_BYTES),
  });
}

/**
 * Small publishes carry the nodes they wrote beside the signature, in the index envelope's
 * `nodes` field (DSSE consumers ignore fields they do not know): an agent one version behind then
 * needs no request beyond the index. They are outside the signed payload on purpose: each is
 * trusted only when its sha256 equals a pin reached from the signed root, exactly as a fetched
 * node, so carrying them unsigned changes nothing, and as plain JSON they compress well.
 */
export function envelopeWithNodes(
  envelopeBytes: Uint8Array,
  nodes: ReadonlyMap<string, Uint8Array>,
): Uint8Array {
  let total = 0;
  for (const bytes of nodes.values()) total += bytes.byteLength;
  if (nodes.size === 0 || nodes.size > MAX_INLINE_NODES || total > MAX_INLINE_NODE_BYTES)
    return envelopeBytes;
  const envelope = JSON.parse(new TextDecoder().decode(envelopeBytes)) as Record<string, unknown>;
  envelope.nodes = [...nodes.values()].map((bytes) => JSON.parse(new TextDecoder().decode(bytes)) as unknown);
  return canonicalizeToBytes(envelope);
}

/** The nodes an index envelope carries, by the sha256 of their canonical bytes (none if unreadable). */
export function inlineNodes(envelopeBytes: Uint8Array): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  let envelope: unknown;
  try {
    envelope = parseStrictJson(decodeUtf8Strict(envelopeBytes), { maxDepth: 12 });
  } catch {
    return out;
  }
  const nodes = (envelope as { nodes?: unknown } | null)?.nodes;
  if (!Array.isArray(nodes) || nodes.length > MAX_INLINE_NODES) return out;
  for (const node of nodes) {
    if (!fieldChecks.isPlainObject(node)) continue;
    const bytes = canonicalizeToBytes(node);
    out.set(createHash('sha256').update(bytes).digest('hex'), bytes);
  }
  return out;
}

/** Nodes from the index envelope first, then from `load`. */
export function withInlineNodes(envelopeBytes: Uint8Array, load: NodeLoader): NodeLoader {
  const inline = inlineNodes(envelopeBytes);
  return async (sha256) => inline.get(sha256) ?? (await load(sha256));
}

// ---------------------------------------------------------------------------------------------
// Reading and editing a tree. Nodes come from a loader (storage, HTTP, a cache); the caller
// decides how much to trust them: decodeNode checks each against its pin and position.

/** Gets the bytes of a node by its sha256, or undefined when the store does not have it. */
export type NodeLoader = (sha256: string) => Promise<Uint8Array | undefined>;

async function loadNode(load: NodeLoader, pin: string, prefix: string, depth: number): Promise<TreeNode> {
  const bytes = await load(pin);
  if (bytes === undefined) {
    throw new WasmMirrorError(
      'NODE_MISSING',
      `node ${pin} (prefix ${prefix || '(root)'}) is pinned but missing`,
    );
  }
  return decodeNode(bytes, pin, prefix, depth);
}

/** The entries of one bin, walking from the root pins; empty if the path holds a null pin. */
export async function readBin(
  root: readonly Pin[],
  depth: number,
  prefix: string,
  load: NodeLoader,
): Promise<ManifestModule[]> {
  let pins: readonly Pin[] = root;
  for (let level = 1; level <= depth; level++) {
    const pin = pins[Number.parseInt(prefix[level - 1]!, 16)];
    if (pin === null || pin === undefined) return [];
    const node = await loadNode(load, pin, prefix.slice(0, level), depth);
    if (node.type === BIN_TYPE) return node.modules;
    pins = node.children;
  }
  return [];
}

/** Every entry of the tree, bin by bin in prefix order (memory: one bin at a time plus the path). */
export async function* walkEntries(
  root: readonly Pin[],
  depth: number,
  load: NodeLoader,
): AsyncGenerator<ManifestModule> {
  async function* walk(pins: readonly Pin[], prefix: string): AsyncGenerator<ManifestModule> {
    for (let i = 0; i < FANOUT; i++) {
      const pin = pins[i];
      if (pin === null || pin === undefined) continue;
      const childPrefix = prefix + i.toString(16);
      const node = await loadNode(load, pin, childPrefix, depth);
      if (node.type === BIN_TYPE) yield* node.modules;
      else yield* walk(node.children, childPrefix);
    }
  }
  yield* walk(root, '');
}

/**
 * Builds a whole tree from entries (sorted or not; each (name, tag) once). Returns the root pins
 * and every node document, keyed by sha256.
 */
export function buildTree(
  modules: readonly ManifestModule[],
  depth: number,
): { root: Pin[]; nodes: Map<string, Uint8Array>; entries: number } {
  const bins = new Map<string, ManifestModule[]>();
  for (const m of modules) {
    const prefix = binOf(m.name, depth);
    const list = bins.get(prefix);
    if (list === undefined) bins.set(prefix, [m]);
    else list.push(m);
  }
  const nodes = new Map<string, Uint8Array>();
  const pinOf = (prefix: string): Pin => {
    if (prefix.length === depth) {
      const list = bins.get(prefix);
      if (list === undefined || list.length === 0) return null;
      list.sort(compareModules);
      const { bytes, sha256 } = encodeNode({ type: BIN_TYPE, prefix, modules: list });
      nodes.set(sha256, bytes);
      return sha256;
    }
    const children = childPins(prefix);
    if (children.every((c) => c === null)) return null;
    const { bytes, sha256 } = encodeNode({ type: PAGE_TYPE, prefix, children });
    nodes.set(sha256, bytes);
    return sha256;
  };
  const childPins = (prefix: string): Pin[] =>
    Array.from({ length: FANOUT }, (_, i) => pinOf(prefix + i.toString(16)));
  return { root: childPins(''), nodes, entries: modules.length };
}

/**
 * Edits a tree in place of whole rebuilds: read the bins a change touches, replace them, and
 * commit writes only the new bins and the pages on their paths. Nodes read are trusted as far
 * as the loader is (the publisher reads its own storage; decodeNode still checks them).
 */
export class TreeEditor {
  readonly #load: NodeLoader;
  readonly #depth: number;
  readonly #root: Pin[];
  /** Pages read so far, by prefix, with their children as loaded. */
  readonly #pages = new Map<string, Pin[]>();
  readonly #bins = new Map<string, ManifestModule[]>();
  readonly #dirty = new Set<string>();
  #entries: number;

  constructor(root: readonly Pin[], depth: number, entries: number, load: NodeLoader) {
    if (root.length !== FANOUT) throw new WasmMirrorError('NODE_INVALID', 'the root must pin 16 children');
    this.#root = [...root];
    this.#depth = depth;
    this.#entries = entries;
    this.#load = load;
  }

  get depth(): number {
    return this.#depth;
  }

  get entries(): number {
    return this.#entries;
  }

  async #children(prefix: string): Promise<Pin[]> {
    if (prefix === '') return this.#root;
    const cached = this.#pages.get(prefix);
    if (cached !== undefined) return cached;
    const parent = await this.#children(prefix.slice(0, -1));
    const pin = parent[Number.parseInt(prefix.at(-1)!, 16)];
    const children =
      pin === null || pin === undefined
        ? Array.from({ length: FANOUT }, (): Pin => null)
        : ((await loadNode(this.#load, pin, prefix, this.#depth)) as PageNode).children;
    this.#pages.set(prefix, [...children]);
    return this.#pages.get(prefix)!;
  }

  /** The entries of the bin `name` falls in (a copy the caller may change and hand to setBin). */
  async bin(prefix: string): Promise<ManifestModule[]> {
    const held = this.#bins.get(prefix);
    if (held !== undefined) return [...held];
    const parent = await this.#children(prefix.slice(0, -1));
    const pin = parent[Number.parseInt(prefix.at(-1)!, 16)];
    const modules =
      pin === null || pin === undefined
        ? []
        : ((await loadNode(this.#load, pin, prefix, this.#depth)) as BinNode).modules;
    this.#bins.set(prefix, modules);
    return [...modules];
  }

  /** Replaces a bin's entries (read it with bin() first). */
  setBin(prefix: string, modules: ManifestModule[]): void {
    const before = this.#bins.get(prefix);
    if (before === undefined)
      throw new WasmMirrorError('INTERNAL', `bin ${prefix} was not read before it was set`);
    this.#entries += modules.length - before.length;
    this.#bins.set(prefix, [...modules].sort(compareModules));
    this.#dirty.add(prefix);
  }

  /** Every bin that holds entries, in prefix order (reads the pages on the way, not the bins). */
  async binPrefixes(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (prefix: string): Promise<void> => {
      const children = await this.#children(prefix);
      for (let i = 0; i < FANOUT; i++) {
        const child = prefix + i.toString(16);
        const held = this.#bins.get(child);
        if (child.length === this.#depth) {
          if (held !== undefined ? held.length > 0 : children[i] !== null) out.push(child);
        } else if (children[i] !== null || [...this.#bins.keys()].some((k) => k.startsWith(child))) {
          await walk(child);
        }
      }
    };
    await walk('');
    return out;
  }

  /** Bins changed since the editor was made. */
  get changedBins(): string[] {
    return [...this.#dirty];
  }

  /** Writes nothing itself: returns the new root pins and the new node documents. */
  async commit(): Promise<{ root: Pin[]; nodes: Map<string, Uint8Array>; entries: number }> {
    const nodes = new Map<string, Uint8Array>();
    // Deepest first, so a page is encoded after every child below it changed.
    const dirtyPages = new Set<string>();
    for (const prefix of this.#dirty) {
      const modules = this.#bins.get(prefix)!;
      let pin: Pin = null;
      if (modules.length > 0) {
        const encoded = encodeNode({ type: BIN_TYPE, prefix, modules });
        nodes.set(encoded.sha256, encoded.bytes);
        pin = encoded.sha256;
      }
      (await this.#children(prefix.slice(0, -1)))[Number.parseInt(prefix.at(-1)!, 16)] = pin;
      for (let l = prefix.length - 1; l >= 1; l--) dirtyPages.add(prefix.slice(0, l));
    }
    const ordered = [...dirtyPages].sort((a, b) => b.length - a.length);
    for (const prefix of ordered) {
      const children = this.#pages.get(prefix)!;
      let pin: Pin = null;
      if (children.some((c) => c !== null)) {
        const encoded = encodeNode({ type: PAGE_TYPE, prefix, children });
        nodes.set(encoded.sha256, encoded.bytes);
        pin = encoded.sha256;
      }
      (await this.#children(prefix.slice(0, -1)))[Number.parseInt(prefix.at(-1)!, 16)] = pin;
    }
    this.#dirty.clear();
    return { root: [...this.#root], nodes, entries: this.#entries };
  }
}
