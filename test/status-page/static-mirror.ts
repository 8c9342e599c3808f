/**
 * A mirror as AWS serves it: the public documents and the status page as static objects, no
 * `/status`. The documents are made by the project's own publisher code (tree, JCS, DSSE, P-256
 * signer), so the page is tested against what a real mirror writes; any path can be overridden
 * to serve tampered bytes, and every request is recorded.
 */
import { createHash, generateKeyPairSync } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import {
  binOf,
  buildPayload,
  buildTree,
  depthFor,
  envelopeWithNodes,
  INDEX_PAYLOAD_TYPE,
  INDEX_TYPE,
  type Pin,
  renderKeysJson,
  signManifest,
  signPayload,
  TreeEditor,
  v2Keys,
  validateIndexPayload,
} from '../../shared/core/manifest/index.ts';
import { statusPageHtml } from '../../shared/status-page/page.ts';

export interface StaticMirror {
  url: string;
  keyid: string;
  version: number;
  /** Served bytes by path (no leading slash). */
  files: Map<string, Uint8Array>;
  /** Paths requested, in order of arrival (no leading slash); empty it with `requests.length = 0`. */
  requests: string[];
  /**
   * Publishes the next version as the publisher does after a small change: `added` entries go
   * into their bins, the changed bins and the pages above them are written, and the new index
   * carries them beside its signature. Returns the carried nodes by sha256. v2 only.
   */
  publish(added: ManifestModule[]): Promise<Map<string, Uint8Array>>;
  /** Serves `bytes` at `path` instead (undefined: a 404). */
  override(path: string, bytes: Uint8Array | undefined): void;
  /** Serves `path` as a body that never ends and has no length, as a hostile server could. */
  endless(path: string): void;
  /** Bytes written to the clients of `endless` paths so far. */
  endlessBytes(): number;
  reset(): void;
  stop(): Promise<void>;
}

export interface StaticMirrorOptions {
  entries: ManifestModule[];
  mirror?: string;
  version?: number;
  issuedAt?: Date;
  ttlMs?: number;
  /** `v1`: only manifests/latest.json, as a mirror from before v2. */
  format?: 'v1' | 'v2';
}

const FORMATS = ['wasm-artifact', 'compat-image', 'cncf-wasm', 'wasm-artifact-1layer'] as const;

/** `count` entries over count/4 names, four tags each, with sizes and dates that sort apart. */
export function syntheticEntries(count: number): ManifestModule[] {
  const out: ManifestModule[] = [];
  for (let i = 0; i < count; i++) {
    const name = `registry.example.com/acme/plugin-${String(Math.floor(i / 4)).padStart(4, '0')}`;
    const tag = `1.${i % 4}.0`;
    out.push({
      name,
      tag,
      ociDigest: `sha256:${createHash('sha256').update(`oci ${i}`).digest('hex')}`,
      sha256: createHash('sha256').update(`module ${i}`).digest('hex'),
      size: 1000 + ((i * 7919) % 500_000),
      format: FORMATS[i % FORMATS.length]!,
      abi: i % 5 === 0 ? 'proxy_abi_version_0_2_1' : 'proxy_abi_version_0_2_0',
      mirroredAt: new Date(Date.UTC(2026, 0, 1) + i * 60_000).toISOString(),
    });
  }
  return out;
}

export async function startStaticMirror(options: StaticMirrorOptions): Promise<StaticMirror> {
  const signer = new LocalKeySigner(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  const mirror = options.mirror ?? 'static-mesh';
  const version = options.version ?? 7;
  const issued = options.issuedAt ?? new Date();
  const expires = new Date(issued.getTime() + (options.ttlMs ?? 48 * 3600_000));
  const files = new Map<string, Uint8Array>();
  files.set(
    'keys.json',
    new TextEncoder().encode(renderKeysJson([{ publicKey: await signer.publicKeySpki() }])),
  );
  files.set('index.html', new TextEncoder().encode(await statusPageHtml()));
  if (options.format === 'v1') {
    const payload = buildPayload({
      mirror,
      version,
      issuedAt: issued,
      expiresAt: expires,
      modules: options.entries,
    });
    files.set('manifests/latest.json', (await signManifest(payload, signer)).bytes);
  }
  const depth = depthFor(options.entries.length);
  let current = { version, root: [] as Pin[], entries: 0 };
  const signIndex = async (tree: { root: Pin[]; entries: number }, v: number) => {
    const index = validateIndexPayload({
      type: INDEX_TYPE,
      mirror,
      version: v,
      issuedAt: issued.toISOString(),
      expiresAt: expires.toISOString(),
      entries: tree.entries,
      depth,
      root: tree.root,
    });
    current = { version: v, root: tree.root, entries: tree.entries };
    return (await signPayload(INDEX_PAYLOAD_TYPE, index, signer)).bytes;
  };
  if (options.format !== 'v1') {
    const tree = buildTree(options.entries, depth);
    for (const [sha256, bytes] of tree.nodes) files.set(v2Keys.node(sha256), bytes);
    files.set(v2Keys.index, await signIndex(tree, version));
  }
  const publish = async (added: ManifestModule[]) => {
    const editor = new TreeEditor(current.root, depth, current.entries, async (sha256) =>
      files.get(v2Keys.node(sha256)),
    );
    for (const m of added) {
      const prefix = binOf(m.name, depth);
      editor.setBin(prefix, [...(await editor.bin(prefix)), m]);
    }
    const tree = await editor.commit();
    // Nodes first, as the publisher writes them: everything the index pins exists.
    for (const [sha256, bytes] of tree.nodes) files.set(v2Keys.node(sha256), bytes);
    files.set(v2Keys.index, envelopeWithNodes(await signIndex(tree, current.version + 1), tree.nodes));
    return tree.nodes;
  };

  const overrides = new Map<string, Uint8Array | undefined>();
  const endless = new Set<string>();
  let endlessBytes = 0;
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname.replace(/^\//, '') || 'index.html';
    requests.push(path);
    if (endless.has(path)) {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      const more = () => {
        while (!res.destroyed && res.write(chunk)) endlessBytes += chunk.length;
        if (!res.destroyed) res.once('drain', more);
      };
      more();
      return;
    }
    const bytes = overrides.has(path) ? overrides.get(path) : files.get(path);
    if (bytes === undefined) {
      // What the CloudFront function answers for anything but the published paths.
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found');
      return;
    }
    res.writeHead(200, {
      'content-type': path.endsWith('.html') ? 'text/html; charset=utf-8' : 'application/json',
      'content-length': bytes.length,
      'cache-control': path.includes('/nodes/') ? 'public, max-age=31536000, immutable' : 'no-cache',
    });
    res.end(bytes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    keyid: await signer.keyId(),
    get version() {
      return current.version;
    },
    files,
    requests,
    publish,
    override: (path, bytes) => overrides.set(path, bytes),
    endless: (path) => endless.add(path),
    endlessBytes: () => endlessBytes,
    reset: () => {
      overrides.clear();
      endless.clear();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The envelope with its payload changed and its signature kept: what a tampering server sends. */
export function tamperEnvelope(
  bytes: Uint8Array,
  edit: (payload: Record<string, unknown>) => void,
): Uint8Array {
  const envelope = JSON.parse(Buffer.from(bytes).toString('utf8')) as { payload: string };
  const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Record<
    string,
    unknown
  >;
  edit(payload);
  envelope.payload = Buffer.from(JSON.stringify(payload)).toString('base64');
  return Buffer.from(JSON.stringify(envelope));
}
