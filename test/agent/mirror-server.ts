/**
 * A test mirror: a static node:http server on 127.0.0.1 over a temp directory laid out as the
 * mirror's public storage (`manifests/`, `modules/sha256/`), with strong ETags on manifests,
 * request counting, and per-path overrides for misbehaving responses.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import type { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { signManifest } from '../../shared/core/manifest/index.ts';
import { moduleEntry, payloadOf, sha256Hex } from '../manifest/helpers.ts';

export type Override = (req: IncomingMessage, res: ServerResponse) => void;

export class TestMirror {
  readonly root = mkdtempSync(join(tmpdir(), 'wm-mirror-'));
  readonly overrides = new Map<string, Override>();
  requests: string[] = [];
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
    if (req.headers['if-none-match'] === etag) return void res.writeHead(304, { etag }).end();
    res
      .writeHead(200, { 'content-length': body.length, etag, 'content-type': 'application/octet-stream' })
      .end(body);
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
