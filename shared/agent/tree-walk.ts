/**
 * The agent's side of manifest v2 (docs/manifest-v2.md): from a verified index, walk only the
 * paths to the bins the selection needs, and fetch only the nodes whose pin differs from the one
 * held for that position. Each fetched node is checked against its pin and its position
 * (decodeNode: NODE_HASH_MISMATCH, NODE_INVALID); a pinned node the mirror does not have is
 * NODE_MISSING. Every node is reached through hashes the signed index pins, so nothing from
 * another version, position or mirror can be slipped in without a hash collision.
 *
 * What is held between syncs is the pins of the pages walked (with their children) and, per
 * bin, its pin and the selected entries, nothing else: memory and the walk file grow with the
 * selection, not with the mirror. The walk file (`DIR/agent-tree.json`, written when a sync
 * succeeds) lets a restarted agent resume without downloading again; it is a cache, so one that
 * cannot be read is dropped.
 */
import { readFile } from 'node:fs/promises';
import { type ManifestModule, SHA256_HEX } from '../core/domain.ts';
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import {
  BIN_TYPE,
  binOf,
  compareModules,
  decodeNode,
  FANOUT,
  type IndexPayload,
  inlineNodes,
  type Pin,
  type VerifiedDocument,
  v2Keys,
} from '../core/manifest/index.ts';
import { validateModuleList } from '../core/manifest/payload.ts';
import { MAX_BIN_BYTES, MAX_PAGE_BYTES } from '../core/manifest/v2.ts';
import type { Logger, Metrics } from '../core/ports.ts';
import { parseStrictJson } from '../core/strict-json.ts';
import { writeFileAtomic } from '../platform/files.ts';
import { forEachLimit } from './concurrency.ts';
import { getDocument } from './fetch-document.ts';
import type { HttpClient } from './http.ts';
import { AGENT_METRICS, MANIFEST_DOCUMENTS, REMOTE_FETCH_RESULTS } from './metrics.ts';
import type { SelectionNames } from './select.ts';

export const TREE_FILE = 'agent-tree.json';
const TREE_FORMAT = 1;
const HEX_PREFIX = /^[0-9a-f]{1,8}$/;

interface HeldPage {
  pin: string;
  children: Pin[];
}

interface HeldBin {
  pin: string;
  /** The bin's entries the selection matched. */
  modules: ManifestModule[];
}

/** A completed walk: what the agent holds of one index. */
interface HeldTree {
  /** sha256 of the index payload walked. */
  index: string;
  depth: number;
  /** The --select globs the bins' entries were filtered with. */
  select: string[];
  pages: Map<string, HeldPage>;
  bins: Map<string, HeldBin>;
}

/** Where node bytes are kept as received, for an agent that serves them (--serve). */
export interface NodeStore {
  has(pin: string): boolean;
  put(pin: string, bytes: Uint8Array): Promise<void>;
}

export interface TreeWalkerOptions {
  /** Base URL of the mirror, without a trailing slash. */
  mirrorUrl: string;
  http: HttpClient;
  /** Nodes fetched in parallel. */
  concurrency: number;
  /** Each node request, body included, must finish within this. */
  timeoutMs: number;
  /** The walk file. */
  file: string;
  select: readonly string[];
  names: SelectionNames;
  selected: (m: ManifestModule) => boolean;
  store?: NodeStore | undefined;
  /** Told the bytes received for each node, as they arrive. */
  onDocumentBytes: (document: string, n: number) => void;
  metrics: Metrics;
  logger: Logger;
}

export interface WalkResult {
  /** The selected entries, sorted by (name, tag): v1's `modules` for what this agent selects. */
  modules: ManifestModule[];
  /** Nodes downloaded by this walk. */
  fetched: number;
  /** Every node pinned on the paths walked: what an agent serving the tree must keep. */
  pins: Set<string>;
}

export class TreeWalker {
  readonly #o: TreeWalkerOptions;
  #held: HeldTree | undefined;
  /** The selected entries of #held, sorted (computed once per walk). */
  #heldModules: ManifestModule[] | undefined;
  /** The last walk changed what is held, and the walk file does not say so yet. */
  #unsaved = false;
  /** The nodes a failed walk did verify, so the retry does not download them again. */
  #salvage: HeldTree | undefined;
  #loaded = false;

  constructor(options: TreeWalkerOptions) {
    this.#o = options;
  }

  /** The pins of the last completed walk (read from the walk file after a restart). */
  async heldPins(): Promise<Set<string>> {
    await this.#load();
    return this.#held === undefined ? new Set() : pinsOf(this.#held);
  }

  /** The selected entries of the tree `index` pins, fetching only what is not held. */
  async walk(index: VerifiedDocument<IndexPayload>, signal?: AbortSignal): Promise<WalkResult> {
    await this.#load();
    const { depth, root } = index.payload;
    const held = this.#held;
    const sameSelect = held !== undefined && sameList(held.select, this.#o.select);
    if (
      held !== undefined &&
      held.index === index.payloadSha256 &&
      sameSelect &&
      (this.#o.store === undefined || [...pinsOf(held)].every((pin) => this.#o.store!.has(pin)))
    ) {
      this.#heldModules ??= modulesOf(held);
      return { modules: this.#heldModules, fetched: 0, pins: pinsOf(held) };
    }
    // Nodes the index carries (a small publish): checked like fetched ones, but no request.
    this.#inline = inlineNodes(index.bytes);
    const next: HeldTree = {
      index: index.payloadSha256,
      depth,
      select: [...this.#o.select],
      pages: new Map(),
      bins: new Map(),
    };
    // What can stand in for a download: the last complete walk and what a failed walk since then
    // verified. Pins of another depth name other positions; bins filtered by another selection
    // hold other entries.
    const salvaged = this.#salvage;
    this.#salvage = undefined;
    const sources = [held, salvaged].filter((t): t is HeldTree => t !== undefined && t.depth === depth);
    const binSources = sources.filter((t) => sameList(t.select, next.select));
    const keptBin = (prefix: string, pin: string) =>
      binSources.map((t) => t.bins.get(prefix)).find((b) => b?.pin === pin && this.#stored(pin));
    const keptPage = (prefix: string, pin: string) =>
      sources.map((t) => t.pages.get(prefix)).find((p) => p?.pin === pin && this.#stored(pin));
    const needed = neededPrefixes(this.#o.names, depth);
    let fetched = 0;
    let frontier = childrenOf('', root, needed);
    try {
      while (frontier.length > 0) {
        const below: { prefix: string; pin: string }[] = [];
        await forEachLimit(frontier, this.#o.concurrency, async ({ prefix, pin }) => {
          if (prefix.length === depth) {
            const kept = keptBin(prefix, pin);
            if (kept !== undefined) {
              next.bins.set(prefix, kept);
              return;
            }
            const node = await this.#fetchNode(pin, prefix, depth, signal);
            fetched++;
            if (node.type !== BIN_TYPE) throw new WasmMirrorError('INTERNAL', `node ${prefix} is not a bin`);
            next.bins.set(prefix, { pin, modules: node.modules.filter(this.#o.selected) });
            return;
          }
          let page = keptPage(prefix, pin);
          if (page === undefined) {
            const node = await this.#fetchNode(pin, prefix, depth, signal);
            fetched++;
            if (node.type === BIN_TYPE) throw new WasmMirrorError('INTERNAL', `node ${prefix} is not a page`);
            page = { pin, children: node.children };
          }
          next.pages.set(prefix, page);
          below.push(...childrenOf(prefix, page.children, needed));
        });
        // Prefix order, whatever order the pages arrived in: a walk visits nodes the same way each time.
        frontier = below.sort((a, b) => (a.prefix < b.prefix ? -1 : 1));
      }
    } catch (err) {
      // Everything verified so far, this walk's and the last failed one's, for the retry.
      if (salvaged?.depth === depth) {
        for (const [k, v] of salvaged.pages) if (!next.pages.has(k)) next.pages.set(k, v);
        for (const [k, v] of salvaged.bins) if (!next.bins.has(k)) next.bins.set(k, v);
      }
      this.#salvage = next;
      const e = toWasmMirrorError(err);
      this.#o.metrics.count(AGENT_METRICS.remoteFetches, { result: REMOTE_FETCH_RESULTS.manifestFailure });
      if (e.code.startsWith('NODE_') || e.code === 'DECOMPRESSION_BOMB') {
        this.#o.metrics.count(AGENT_METRICS.verificationFailures, { code: e.code });
      }
      throw e;
    }
    const pins = pinsOf(next);
    // A re-signed index over the same tree changes nothing held: no need to rewrite the file.
    if (held === undefined || held.depth !== depth || !sameSelect || !sameSet(pinsOf(held), pins))
      this.#unsaved = true;
    this.#held = next;
    this.#heldModules = modulesOf(next);
    return { modules: this.#heldModules, fetched, pins };
  }

  /**
   * Writes the last walk to the walk file; called once the sync it served succeeded, so the file
   * always describes the last good set.
   */
  async save(): Promise<void> {
    if (!this.#unsaved || this.#held === undefined) return;
    await this.#save(this.#held);
    this.#unsaved = false;
  }

  /** A held node is only reusable by a serving agent if its bytes are on disk to serve. */
  #stored(pin: string): boolean {
    return this.#o.store === undefined || this.#o.store.has(pin);
  }

  #inline = new Map<string, Uint8Array>();

  async #fetchNode(pin: string, prefix: string, depth: number, signal: AbortSignal | undefined) {
    const carried = this.#inline.get(pin);
    if (carried !== undefined) {
      const node = decodeNode(carried, pin, prefix, depth);
      await this.#o.store?.put(pin, carried);
      return node;
    }
    const url = new URL(`${this.#o.mirrorUrl}/${v2Keys.node(pin)}`);
    const cap = prefix.length === depth ? MAX_BIN_BYTES : MAX_PAGE_BYTES;
    const got = await getDocument(this.#o.http, {
      url,
      maxBytes: cap,
      timeoutMs: this.#o.timeoutMs,
      signal,
      tooLarge: (n) =>
        new WasmMirrorError(
          'NODE_INVALID',
          `${url.href}: node ${prefix} of at least ${n} bytes is over ${cap}`,
        ),
      onWireBytes: (n) => this.#o.onDocumentBytes(MANIFEST_DOCUMENTS.node, n),
    });
    if (got.status !== 'ok') {
      throw new WasmMirrorError(
        'NODE_MISSING',
        `${url.href}: node ${prefix} is pinned by the index but the mirror answers HTTP ${got.status === 'absent' ? got.http : 304}`,
      );
    }
    const node = decodeNode(got.bytes, pin, prefix, depth);
    await this.#o.store?.put(pin, got.bytes);
    return node;
  }

  async #load(): Promise<void> {
    if (this.#loaded) return;
    this.#loaded = true;
    let text: string;
    try {
      text = await readFile(this.#o.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.#o.logger.warn('cannot read the walk file; walking the tree again', { error: String(err) });
      }
      return;
    }
    try {
      this.#held = parseHeld(text);
    } catch (err) {
      this.#o.logger.warn('the walk file is unreadable; walking the tree again', {
        file: this.#o.file,
        error: (err as Error).message,
      });
    }
  }

  async #save(held: HeldTree): Promise<void> {
    const doc = {
      format: TREE_FORMAT,
      index: held.index,
      depth: held.depth,
      select: held.select,
      pages: Object.fromEntries(held.pages),
      bins: Object.fromEntries(held.bins),
    };
    await writeFileAtomic(this.#o.file, JSON.stringify(doc));
  }
}

/**
 * The prefixes a selection needs at every level: the bins of its exact names and every prefix
 * of them, or undefined for all of them (a wildcard in a name needs every bin).
 */
function neededPrefixes(names: SelectionNames, depth: number): Set<string> | undefined {
  if (names.all) return undefined;
  const out = new Set<string>();
  for (const name of names.names) {
    const bin = binOf(name, depth);
    for (let l = 1; l <= depth; l++) out.add(bin.slice(0, l));
  }
  return out;
}

function childrenOf(
  prefix: string,
  pins: readonly Pin[],
  needed: Set<string> | undefined,
): { prefix: string; pin: string }[] {
  const out: { prefix: string; pin: string }[] = [];
  for (let i = 0; i < FANOUT; i++) {
    const pin = pins[i];
    const child = prefix + i.toString(16);
    // A null pin is an empty subtree: nothing to fetch, nothing listed.
    if (pin !== null && pin !== undefined && (needed === undefined || needed.has(child)))
      out.push({ prefix: child, pin });
  }
  return out;
}

function modulesOf(held: HeldTree): ManifestModule[] {
  const out: ManifestModule[] = [];
  for (const bin of held.bins.values()) out.push(...bin.modules);
  return out.sort(compareModules);
}

function pinsOf(held: HeldTree): Set<string> {
  const out = new Set<string>();
  for (const page of held.pages.values()) out.add(page.pin);
  for (const bin of held.bins.values()) out.add(bin.pin);
  return out;
}

/** Whether two sets hold the same values. */
export function sameSet(a: ReadonlySet<string>, b: ReadonlySet<string>): boolean {
  if (a.size !== b.size) return false;
  for (const v of a) if (!b.has(v)) return false;
  return true;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** Reads a walk file strictly; throws on anything unexpected. */
function parseHeld(text: string): HeldTree {
  const doc = parseStrictJson(text, { maxDepth: 8 }) as Record<string, unknown>;
  const fail = (why: string): never => {
    throw new Error(why);
  };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) fail('not an object');
  if (doc.format !== TREE_FORMAT) fail(`unknown format ${String(doc.format)}`);
  const { index, depth, select, pages, bins } = doc;
  if (typeof index !== 'string' || !SHA256_HEX.test(index)) fail('bad index');
  if (typeof depth !== 'number' || !Number.isInteger(depth) || depth < 1 || depth > 8) fail('bad depth');
  if (!Array.isArray(select) || !select.every((s) => typeof s === 'string')) fail('bad select');
  const isRecord = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isRecord(pages) || !isRecord(bins)) fail('bad pages or bins');
  const held: HeldTree = {
    index: index as string,
    depth: depth as number,
    select: select as string[],
    pages: new Map(),
    bins: new Map(),
  };
  const pinOk = (pin: unknown): pin is string => typeof pin === 'string' && SHA256_HEX.test(pin);
  for (const [prefix, raw] of Object.entries(pages as Record<string, unknown>)) {
    if (!HEX_PREFIX.test(prefix) || prefix.length >= held.depth || !isRecord(raw)) fail(`bad page ${prefix}`);
    const { pin, children } = raw as Record<string, unknown>;
    if (!pinOk(pin) || !Array.isArray(children) || children.length !== FANOUT) fail(`bad page ${prefix}`);
    if (!(children as unknown[]).every((c) => c === null || pinOk(c))) fail(`bad page ${prefix}`);
    held.pages.set(prefix, { pin: pin as string, children: children as Pin[] });
  }
  for (const [prefix, raw] of Object.entries(bins as Record<string, unknown>)) {
    if (!HEX_PREFIX.test(prefix) || prefix.length !== held.depth || !isRecord(raw)) fail(`bad bin ${prefix}`);
    const { pin, modules } = raw as Record<string, unknown>;
    if (!pinOk(pin) || !Array.isArray(modules)) fail(`bad bin ${prefix}`);
    held.bins.set(prefix, { pin: pin as string, modules: validateModuleList(modules as unknown[], prefix) });
  }
  return held;
}
