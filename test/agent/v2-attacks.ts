/**
 * The v2 attack catalogue, against a test mirror serving a v2 tree. Each case starts from an
 * agent in sync with the good version 42, changes what the mirror serves, and names the exact
 * code the agent's next sync must fail with. v2-attacks.test.ts runs them and checks that the
 * last good modules, manifest.json and walk file stay as they were.
 */
import { gzipSync } from 'node:zlib';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import type { ErrorCode } from '../../shared/core/errors.ts';
import {
  BIN_TYPE,
  binOf,
  compareModules,
  decodeNode,
  encodeNode,
  PAGE_TYPE,
  type PageNode,
  type Pin,
  v2Keys,
} from '../../shared/core/manifest/index.ts';
import { indexPayloadOf, type PublishedIndex, signIndex, type TestMirror } from './mirror-server.ts';

export interface V2AttackContext {
  mirror: TestMirror;
  signer: LocalKeySigner;
  /** Version 42, which the agent has accepted and walked in full. */
  good: PublishedIndex;
  entries: ManifestModule[];
  now: Date;
}

export interface V2AttackCase {
  name: string;
  code: ErrorCode;
  /** Makes the mirror serve the attack; may return a later time to move the agent's clock to. */
  build(ctx: V2AttackContext): Promise<{ now?: Date } | undefined>;
}

/** A legitimate version 43: one entry retagged, so one bin and one page are new. */
async function publishNext(ctx: V2AttackContext, options: { issuedAt?: Date } = {}) {
  const changed = { ...ctx.entries[5]!, tag: '43' };
  const next = await ctx.mirror.publishIndex(ctx.signer, [...ctx.entries, changed], {
    version: 43,
    ...options,
  });
  const prefix = binOf(changed.name, next.payload.depth);
  const fresh = [...next.nodes.keys()].filter((sha) => !ctx.good.nodes.has(sha));
  const bin = fresh.find(
    (sha) => decodeNode(next.nodes.get(sha)!, sha, prefix, next.payload.depth).type === BIN_TYPE,
  )!;
  const page = fresh.find((sha) => sha !== bin)!;
  return { next, prefix, bin, page };
}

/** The node of `tree` at `prefix`, found by walking its pins. */
function nodeAt(tree: PublishedIndex, prefix: string): { sha: string; bytes: Uint8Array } {
  let pins: readonly Pin[] = tree.payload.root;
  let sha = '';
  for (let level = 1; level <= prefix.length; level++) {
    sha = pins[Number.parseInt(prefix[level - 1]!, 16)]!;
    if (sha === null) throw new Error(`no node at ${prefix}`);
    const node = decodeNode(tree.nodes.get(sha)!, sha, prefix.slice(0, level), tree.payload.depth);
    if (node.type === PAGE_TYPE) pins = node.children;
  }
  return { sha, bytes: tree.nodes.get(sha)! };
}

/** Serves `bytes` at a node's URL, whatever its name says. */
function serveAt(mirror: TestMirror, sha: string, bytes: Uint8Array): void {
  mirror.overrides.set(`/${v2Keys.node(sha)}`, (_req, res) => {
    res.writeHead(200, { 'content-length': bytes.length }).end(Buffer.from(bytes));
  });
}

/** 64 MiB of zeros in about 64 KiB of gzip. */
function bomb(): Buffer {
  return gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
}

function serveBomb(mirror: TestMirror, path: string): void {
  const body = bomb();
  mirror.overrides.set(path, (_req, res) => {
    res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': body.length }).end(body);
  });
}

/**
 * Signs an index (with the trusted key) over a root whose subtree `prefix` is replaced by
 * `node`: what a buggy or subverted publisher could sign, to show positions are checked too.
 */
async function signWithNodeAt(ctx: V2AttackContext, bin: { prefix: string; modules: ManifestModule[] }) {
  const depth = ctx.good.payload.depth;
  const encodedBin = encodeNode({ type: BIN_TYPE, prefix: bin.prefix, modules: bin.modules });
  ctx.mirror.put(v2Keys.node(encodedBin.sha256), encodedBin.bytes);
  let childPin = encodedBin.sha256;
  for (let level = depth - 1; level >= 1; level--) {
    const pagePrefix = bin.prefix.slice(0, level);
    const page = decodeNode(
      nodeAt(ctx.good, pagePrefix).bytes,
      nodeAt(ctx.good, pagePrefix).sha,
      pagePrefix,
      depth,
    ) as PageNode;
    const children = [...page.children];
    children[Number.parseInt(bin.prefix[level]!, 16)] = childPin;
    const encoded = encodeNode({ type: PAGE_TYPE, prefix: pagePrefix, children });
    ctx.mirror.put(v2Keys.node(encoded.sha256), encoded.bytes);
    childPin = encoded.sha256;
  }
  const root = [...ctx.good.payload.root];
  root[Number.parseInt(bin.prefix[0]!, 16)] = childPin;
  const payload = indexPayloadOf(root, ctx.good.payload.entries + 1, depth, { version: 43 });
  ctx.mirror.put(v2Keys.index, await signIndex(payload, ctx.signer));
}

export const v2AttackCases: V2AttackCase[] = [
  {
    name: 'a node swapped for another validly hashed node from another position',
    code: 'NODE_HASH_MISMATCH',
    async build(ctx) {
      const { bin, prefix } = await publishNext(ctx);
      const otherPrefix = prefix === 'ff' ? 'fe' : 'ff';
      serveAt(ctx.mirror, bin, nodeAt(ctx.good, otherPrefix).bytes);
      return undefined;
    },
  },
  {
    name: 'a node swapped for the same position’s node of another version',
    code: 'NODE_HASH_MISMATCH',
    async build(ctx) {
      const { bin, prefix } = await publishNext(ctx);
      serveAt(ctx.mirror, bin, nodeAt(ctx.good, prefix).bytes);
      return undefined;
    },
  },
  {
    name: 'a mix of two versions’ parts: the new index over the old pages',
    code: 'NODE_HASH_MISMATCH',
    async build(ctx) {
      const { page, prefix } = await publishNext(ctx);
      serveAt(ctx.mirror, page, nodeAt(ctx.good, prefix.slice(0, 1)).bytes);
      return undefined;
    },
  },
  {
    name: 'a signed index pinning a valid node at another position',
    code: 'NODE_INVALID',
    async build(ctx) {
      const root = [...ctx.good.payload.root];
      const [i, j] = [0, 1].map((n) => root.findIndex((pin, k) => pin !== null && k >= n * 8));
      root[i!] = ctx.good.payload.root[j!]!;
      const payload = indexPayloadOf(root, ctx.good.payload.entries, ctx.good.payload.depth, { version: 43 });
      ctx.mirror.put(v2Keys.index, await signIndex(payload, ctx.signer));
      return undefined;
    },
  },
  {
    name: 'an index that pins a node the server does not have',
    code: 'NODE_MISSING',
    async build(ctx) {
      const { bin } = await publishNext(ctx);
      ctx.mirror.overrides.set(`/${v2Keys.node(bin)}`, (_req, res) => void res.writeHead(404).end());
      return undefined;
    },
  },
  {
    name: 'a bin whose entry does not hash into it',
    code: 'NODE_INVALID',
    async build(ctx) {
      const depth = ctx.good.payload.depth;
      const victim = ctx.entries[0]!;
      const prefix = binOf(victim.name, depth);
      const stranger = ctx.entries.find((m) => binOf(m.name, depth) !== prefix)!;
      const inBin = ctx.entries.filter((m) => binOf(m.name, depth) === prefix);
      await signWithNodeAt(ctx, {
        prefix,
        modules: [...inBin, { ...stranger, tag: 'smuggled' }].sort(compareModules),
      });
      return undefined;
    },
  },
  {
    name: 'a decompression bomb as the index',
    code: 'DECOMPRESSION_BOMB',
    async build(ctx) {
      serveBomb(ctx.mirror, `/${v2Keys.index}`);
      return undefined;
    },
  },
  {
    name: 'a decompression bomb as a node',
    code: 'DECOMPRESSION_BOMB',
    async build(ctx) {
      const { bin } = await publishNext(ctx);
      serveBomb(ctx.mirror, `/${v2Keys.node(bin)}`);
      return undefined;
    },
  },
  {
    name: 'a node over its size cap',
    code: 'NODE_INVALID',
    async build(ctx) {
      const { page } = await publishNext(ctx);
      const big = Buffer.alloc(64 * 1024, 0x20);
      ctx.mirror.overrides.set(`/${v2Keys.node(page)}`, (_req, res) => void res.writeHead(200).end(big));
      return undefined;
    },
  },
  {
    name: 'a validly signed older index (rollback)',
    code: 'ROLLBACK',
    async build(ctx) {
      const payload = { ...ctx.good.payload, version: 41 };
      ctx.mirror.put(v2Keys.index, await signIndex(payload, ctx.signer));
      return undefined;
    },
  },
  {
    name: 'the same index version over another tree',
    code: 'VERSION_CONFLICT',
    async build(ctx) {
      const { next } = await publishNext(ctx);
      const payload = { ...next.payload, version: 42 };
      ctx.mirror.put(v2Keys.index, await signIndex(payload, ctx.signer));
      return undefined;
    },
  },
  {
    name: 'an expired index',
    code: 'MANIFEST_EXPIRED',
    async build(ctx) {
      await publishNext(ctx, { issuedAt: new Date(ctx.now.getTime() - 72 * 3600e3) });
      return undefined;
    },
  },
  {
    name: 'an index frozen past its expiry (304 forever)',
    code: 'MANIFEST_EXPIRED',
    async build(ctx) {
      return { now: new Date(Date.parse(ctx.good.payload.expiresAt) + 1000) };
    },
  },
];
