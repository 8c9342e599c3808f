/**
 * A test mirror: a static node:http server on 127.0.0.1 over a temp directory laid out as the
 * mirror's public storage (`manifests/`, `manifests/v2/`, `modules/sha256/`), with strong ETags,
 * gzip for JSON when asked (as CloudFront and the embedded server do), request and byte
 * counting, and per-path overrides for misbehaving responses. Until the publisher writes v2,
 * `publishIndex` builds and signs v2 trees here.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import {
  buildTree,
  depthFor,
  INDEX_PAYLOAD_TYPE,
  type IndexPayload,
  type Pin,
  signManifest,
  signPayload,
  v2Keys,
  validateIndexPayload,
} from '../../shared/core/manifest/index.ts';
import { moduleEntry, payloadOf, sha256Hex, T0 } from '../manifest/helpers.ts';

export interface IndexOptions {
  mirror?: string;
  version?: number;
  issuedAt?: Date;
  ttlMs?: number;
  /** @default depthFor(entries) */
  depth?: number;
}

export interface PublishedIndex {
  /** The signed envelope, as stored at manifests/v2/index.json. */
  bytes: Uint8Array;
  payload: IndexPayload;
  /** Every node of the tree, by sha256. */
  nodes: Map<string, Uint8Array>;
}

/** An index payload over root pins, with the test suite's defaults (prod-mesh, version 42, T0, 48 h). */
export function indexPayloadOf(
  root: Pin[],
  entries: number,
  depth: number,
  options: IndexOptions = {},
): IndexPayload {
  const issuedAt = options.issuedAt ?? T0;
  return validateIndexPayload({
    type: 'wasm-mirror.index/v2',
    mirror: options.mirror ?? 'prod-mesh',
    version: options.version ?? 42,
    issuedAt: issuedAt.toISOString(),
    expiresAt: new Date(issuedAt.getTime() + (options.ttlMs ?? 48 * 3600e3)).toISOString(),
    entries,
    depth,
    root,
  });
}

export async function signIndex(payload: IndexPayload, signer: LocalKeySigner): Promise<Uint8Array> {
  return (await signPayload(INDEX_PAYLOAD_TYPE, validateIndexPayload(payload), signer)).bytes;
}

export type Override = (req: IncomingMessage, res: ServerResponse) => void;

export class TestMirror {
  readonly root = mkdtempSync(join(tmpdir(), 'wm-mirror-'));
  readonly overrides = new Map<string, Override>();
  requests: string[] = [];
  /** Body bytes sent, as sent (compressed or not). */
  bytesSent = 0;
  /** 304 answers. */
  notModified = 0;
  /** Send JSON documents gzipped to clients that ask for gzip. */
  gzipJson = true;
  #server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.#server!.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    rmSync(this.root, { recursive: true, force: true });
  }

  put(key: string, bytes: Uint8Array | string): void {
    const path = join(this.root, key);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, bytes);
  }

  /** Stores module bytes and returns their manifest entry. */
  addModule(name: string, bytes: Uint8Array, tag = '1.0.0'): ManifestModule {
    this.put(`modules/sha256/${sha256Hex(bytes)}.wasm`, bytes);
    return moduleEntry(name, bytes, tag);
  }

  /** Signs and publishes a manifest as the publisher would (versioned copy + latest.json). */
  async publish(
    signer: LocalKeySigner,
    modules: ManifestModule[],
    overrides: Parameters<typeof payloadOf>[1] = {},
  ): Promise<Uint8Array> {
    const payload = payloadOf(modules, overrides);
    const { bytes } = await signManifest(payload, signer);
    this.put(`manifests/${payload.version}.json`, bytes);
    this.put('manifests/latest.json', bytes);
    return bytes;
  }

  /**
   * Builds, signs and publishes a v2 tree as the publisher would: nodes first, the versioned
   * index, then index.json.
   */
  async publishIndex(
    signer: LocalKeySigner,
    modules: ManifestModule[],
    options: IndexOptions = {},
  ): Promise<PublishedIndex> {
    const depth = options.depth ?? depthFor(modules.length);
    const tree = buildTree(modules, depth);
    for (const [sha, bytes] of tree.nodes) this.put(v2Keys.node(sha), bytes);
    const payload = indexPayloadOf(tree.root, tree.entries, depth, options);
    const bytes = await signIndex(payload, signer);
    this.put(v2Keys.indexVersion(payload.version), bytes);
    this.put(v2Keys.index, bytes);
    return { bytes, payload, nodes: tree.nodes };
  }

  /** Counters back to zero, before measuring one sync. */
  resetCounters(): void {
    this.requests = [];
    this.bytesSent = 0;
    this.notModified = 0;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    this.requests.push(path);
    const override = this.overrides.get(path);
    if (override) {
      override(req, res);
      return;
    }
    const file = normalize(join(this.root, path));
    if (!file.startsWith(this.root)) return void res.writeHead(403).end();
    let body: Buffer;
    try {
      if (!statSync(file).isFile()) throw new Error('not a file');
      body = readFileSync(file);
    } catch {
      return void res.writeHead(404).end();
    }
    const etag = `"${createHash('sha256').update(body).digest('hex')}"`;
    if (req.headers['if-none-match']?.replace(/^W\//, '') === etag) {
      this.notModified++;
      return void res.writeHead(304, { etag }).end();
    }
    const headers: Record<string, string | number> = { etag, 'content-type': 'application/octet-stream' };
    if (this.gzipJson && path.endsWith('.json') && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) {
      body = gzipSync(body);
      headers['content-encoding'] = 'gzip';
      headers.etag = `W/${etag}`;
    }
    headers['content-length'] = body.length;
    this.bytesSent += body.length;
    res.writeHead(200, headers).end(body);
  }
}

export function wasmBytes(seed: string, size = 64): Uint8Array {
  const out = Buffer.alloc(size);
  Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]).copy(out);
  let h = createHash('sha256').update(seed).digest();
  for (let off = 8; off < size; off += h.length) {
    h.copy(out, off);
    h = createHash('sha256').update(h).digest();
  }
  return new Uint8Array(out);
}
