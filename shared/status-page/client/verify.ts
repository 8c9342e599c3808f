/**
 * The status page's own verifier: it runs in the browser, on WebCrypto alone, and shares no code
 * with the Node verifier, so what the page shows as verified was checked by a second
 * implementation written from the specifications (DSSE PAE, ECDSA P-256 with SHA-256 over it,
 * docs/manifest-v2.md for the tree). The order is the agent's, and it fails closed: keys,
 * envelope, a signature by a listed and currently valid key, the signed payload, then (v2) every
 * node against the pin its parent gave it before any of its entries is listed. Nodes a small
 * publish carries in the index envelope, and nodes this browser kept from an earlier visit, are
 * checked exactly like fetched ones, and save their requests.
 */

export const INDEX_PAYLOAD_TYPE = 'application/vnd.wasm-mirror.index.v2+json';
export const MANIFEST_PAYLOAD_TYPE = 'application/vnd.wasm-mirror.manifest.v1+json';
export const INDEX_TYPE = 'wasm-mirror.index/v2';
export const MANIFEST_TYPE = 'wasm-mirror.manifest/v1';
export const PAGE_TYPE = 'wasm-mirror.page/v2';
export const BIN_TYPE = 'wasm-mirror.bin/v2';

export const paths = {
  keys: 'keys.json',
  index: 'manifests/v2/index.json',
  latest: 'manifests/latest.json',
  node: (sha256: string) => `manifests/v2/nodes/sha256/${sha256}.json`,
} as const;

/** The same caps the agent applies, so a hostile server cannot make the page hold more. */
export const limits = {
  keysBytes: 64 * 1024,
  indexBytes: 64 * 1024,
  manifestBytes: 16 * 1024 * 1024,
  pageBytes: 4 * 1024,
  binBytes: 4 * 1024 * 1024,
  maxSignatures: 16,
  maxDepth: 8,
  fanout: 16,
  /** The agent reads no carried nodes from an envelope that carries more. */
  carriedNodes: 16,
} as const;

/**
 * The most a response to `path` may hold: a fetcher stops reading past it (one byte more is
 * enough for the checks here to refuse the document), so a hostile server cannot make the page
 * download more than a real mirror would send.
 */
export function maxBytesOf(path: string): number {
  if (path === paths.keys) return limits.keysBytes;
  if (path === paths.index) return limits.indexBytes;
  if (path === paths.latest) return limits.manifestBytes;
  return limits.binBytes;
}

/**
 * Node requests in flight at once. An HTTP/1.1 server gets six connections from the browser
 * whatever this says (the rest wait in the browser's queue at no cost); over HTTP/2, as a CDN
 * serves the page, more in flight hides more round trips.
 */
export const NODE_CONCURRENCY = 32;

const SHA256_HEX = /^[0-9a-f]{64}$/;
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
const P256_FIELD_BYTES = 32;

export interface ModuleEntry {
  name: string;
  tag: string;
  ociDigest: string;
  sha256: string;
  size: number;
  format: string;
  mirroredAt: string;
  kind?: string;
  abi?: string;
}

/** What the signed document says about itself, once its signature verified. */
export interface SignedFacts {
  format: 'v2' | 'v1';
  mirror: string;
  version: number;
  issuedAt: string;
  expiresAt: string;
  entries: number;
}

export type FailureCode =
  | 'CRYPTO_UNAVAILABLE'
  | 'KEYS_UNAVAILABLE'
  | 'ENVELOPE_MALFORMED'
  | 'PAYLOAD_TYPE_MISMATCH'
  | 'NO_SIGNATURES'
  | 'UNKNOWN_KEY'
  | 'KEY_NOT_VALID'
  | 'SIGNATURE_INVALID'
  | 'SCHEMA_ERROR'
  | 'NODE_MISSING'
  | 'NODE_HASH_MISMATCH'
  | 'NODE_INVALID'
  | 'FETCH_FAILED';

export class VerifyError extends Error {
  constructor(
    readonly code: FailureCode,
    message: string,
  ) {
    super(message);
  }
}

/** Failures that mean "do not trust this signature", as opposed to a bad tree under a good one. */
export const SIGNATURE_FAILURES: ReadonlySet<FailureCode> = new Set<FailureCode>([
  'KEYS_UNAVAILABLE',
  'ENVELOPE_MALFORMED',
  'PAYLOAD_TYPE_MISMATCH',
  'NO_SIGNATURES',
  'UNKNOWN_KEY',
  'KEY_NOT_VALID',
  'SIGNATURE_INVALID',
]);

export interface PageKey {
  keyid: string;
  key: CryptoKey;
  notBefore?: number;
  notAfter?: number;
}

/** GET relative to the mirror's root: status and bytes; a network error is a status of 0. */
export type Fetcher = (path: string) => Promise<{ status: number; bytes: Uint8Array<ArrayBuffer> }>;

/** Where the nodes of a v2 tree came from; every one was checked against its pin. */
export interface TreeStats {
  nodes: number;
  /** In the index envelope's `nodes` field. */
  carried: number;
  /** Kept by this browser from an earlier visit. */
  kept: number;
  fetched: number;
}

/** Node bytes by sha256. */
export type NodeBytes = ReadonlyMap<string, Uint8Array<ArrayBuffer>>;

export type MirrorView =
  | {
      state: 'verified';
      keyid: string;
      facts: SignedFacts;
      modules: ModuleEntry[];
      /** v2: where the nodes came from, and every node of the tree (to keep for the next visit). */
      tree?: TreeStats;
      nodes?: NodeBytes;
    }
  | { state: 'missing' }
  | { state: 'failed'; code: FailureCode; message: string; keyid?: string; facts?: SignedFacts };

export interface LoadOptions {
  now: Date;
  /** Only this key is trusted (the page's `?keyid=`), whatever keys.json lists. */
  pinnedKeyid?: string;
  /** Called once the index verified (0 nodes read), then after each node. */
  onProgress?: (nodesRead: number, nodesKnown: number) => void;
  /** Node requests in flight at once (NODE_CONCURRENCY). */
  concurrency?: number;
  /** Nodes kept from an earlier visit, used where a pin names them and they still match it. */
  kept?: Promise<NodeBytes> | NodeBytes;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

function subtle(): SubtleCrypto {
  const s = globalThis.crypto?.subtle;
  if (s === undefined) {
    throw new VerifyError(
      'CRYPTO_UNAVAILABLE',
      'this browser offers WebCrypto only to pages loaded over HTTPS or from localhost: open the page that way',
    );
  }
  return s;
}

export function toHex(bytes: ArrayBuffer | Uint8Array): string {
  const view = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let out = '';
  for (const b of view) out += b.toString(16).padStart(2, '0');
  return out;
}

export async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  return toHex(await subtle().digest('SHA-256', bytes));
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64: canonical padding only, so one envelope has one reading. */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!BASE64.test(text)) return undefined;
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  // Non-zero bits in the last character's unused part make a second spelling of the same bytes.
  if (btoa(binary) !== text) return undefined;
  return out;
}

/** `DSSEv1 <len(type)> <type> <len(body)> <body>`, lengths in bytes. */
export function pae(payloadType: string, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} `);
  const mid = encoder.encode(` ${payload.length} `);
  const out = new Uint8Array(head.length + type.length + mid.length + payload.length);
  out.set(head, 0);
  out.set(type, head.length);
  out.set(mid, head.length + type.length);
  out.set(payload, head.length + type.length + mid.length);
  return out;
}

/**
 * ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } in DER, as node:crypto and KMS write it,
 * to the r||s (IEEE P1363) form WebCrypto takes, each half left-padded to 32 bytes. Anything but
 * minimal, exact DER is refused.
 */
export function derToRaw(der: Uint8Array): Uint8Array<ArrayBuffer> {
  let at = 0;
  const byte = (): number => {
    const b = der[at++];
    if (b === undefined) throw new Error('truncated');
    return b;
  };
  const length = (): number => {
    const first = byte();
    if (first < 0x80) return first;
    // A P-256 signature is at most 72 bytes: only the one-byte long form can be needed.
    if (first === 0x81) {
      const n = byte();
      if (n < 0x80) throw new Error('non-minimal length');
      return n;
    }
    throw new Error('unexpected length form');
  };
  const integer = (): Uint8Array => {
    if (byte() !== 0x02) throw new Error('expected an INTEGER');
    const len = length();
    if (len === 0 || at + len > der.length) throw new Error('bad INTEGER length');
    let value = der.subarray(at, at + len);
    at += len;
    if (value[0]! & 0x80) throw new Error('negative INTEGER');
    if (value.length > 1 && value[0] === 0 && !(value[1]! & 0x80)) throw new Error('non-minimal INTEGER');
    if (value[0] === 0) value = value.subarray(1);
    if (value.length > P256_FIELD_BYTES) throw new Error('INTEGER too large for P-256');
    const out = new Uint8Array(P256_FIELD_BYTES);
    out.set(value, P256_FIELD_BYTES - value.length);
    return out;
  };
  if (byte() !== 0x30) throw new Error('expected a SEQUENCE');
  if (length() !== der.length - at) throw new Error('SEQUENCE length does not match');
  const r = integer();
  const s = integer();
  if (at !== der.length) throw new Error('trailing bytes');
  const raw = new Uint8Array(2 * P256_FIELD_BYTES);
  raw.set(r, 0);
  raw.set(s, P256_FIELD_BYTES);
  return raw;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseJson(bytes: Uint8Array, what: string, code: FailureCode): unknown {
  try {
    return JSON.parse(utf8.decode(bytes));
  } catch (err) {
    throw new VerifyError(code, `${what} is not UTF-8 JSON: ${(err as Error).message}`);
  }
}

function isoTime(value: unknown): number | undefined {
  if (typeof value !== 'string' || !ISO_UTC.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

function count(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

const PEM = /-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]+)-----END PUBLIC KEY-----/;

/**
 * The keys keys.json lists that WebCrypto accepts as P-256 public keys. A keyid is recomputed
 * from the key's bytes: an entry claiming another key's id is dropped, never trusted.
 */
export async function importKeys(bytes: Uint8Array): Promise<PageKey[]> {
  if (bytes.length > limits.keysBytes) throw new VerifyError('KEYS_UNAVAILABLE', 'keys.json is too large');
  const doc = parseJson(bytes, 'keys.json', 'KEYS_UNAVAILABLE');
  if (!isObject(doc) || !Array.isArray(doc.keys)) {
    throw new VerifyError('KEYS_UNAVAILABLE', 'keys.json has no "keys" list');
  }
  const keys: PageKey[] = [];
  for (const entry of doc.keys) {
    if (!isObject(entry) || typeof entry.publicKey !== 'string') continue;
    const pem = PEM.exec(entry.publicKey);
    const spki = decodeBase64((pem === null ? entry.publicKey : pem[1]!).replace(/\s+/g, ''));
    if (spki === undefined) continue;
    const keyid = await sha256Hex(spki);
    if (entry.keyid !== undefined && entry.keyid !== keyid) continue;
    let key: CryptoKey;
    try {
      key = await subtle().importKey('spki', spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    } catch {
      continue;
    }
    const k: PageKey = { keyid, key };
    const notBefore = isoTime(entry.notBefore);
    const notAfter = isoTime(entry.notAfter);
    if (notBefore !== undefined) k.notBefore = notBefore;
    if (notAfter !== undefined) k.notAfter = notAfter;
    keys.push(k);
  }
  if (keys.length === 0) throw new VerifyError('KEYS_UNAVAILABLE', 'keys.json lists no usable P-256 key');
  return keys;
}

/**
 * Checks the envelope and returns the verified payload bytes, the keyid that signed them and the
 * envelope as parsed (its fields beside the signed payload are not signed).
 */
export async function verifyEnvelope(
  bytes: Uint8Array,
  payloadType: string,
  keys: readonly PageKey[],
  now: Date,
): Promise<{ payload: Uint8Array; keyid: string; envelope: Record<string, unknown> }> {
  const doc = parseJson(bytes, 'the envelope', 'ENVELOPE_MALFORMED');
  if (!isObject(doc)) throw new VerifyError('ENVELOPE_MALFORMED', 'the envelope is not a JSON object');
  if (
    typeof doc.payload !== 'string' ||
    typeof doc.payloadType !== 'string' ||
    !Array.isArray(doc.signatures)
  )
    throw new VerifyError('ENVELOPE_MALFORMED', 'the envelope lacks payload, payloadType or signatures');
  if (doc.payloadType !== payloadType) {
    throw new VerifyError(
      'PAYLOAD_TYPE_MISMATCH',
      `payloadType is ${JSON.stringify(doc.payloadType.slice(0, 100))}, expected ${payloadType}`,
    );
  }
  if (doc.signatures.length === 0)
    throw new VerifyError('NO_SIGNATURES', 'the envelope carries no signatures');
  if (doc.signatures.length > limits.maxSignatures)
    throw new VerifyError('ENVELOPE_MALFORMED', 'the envelope carries too many signatures');
  const payload = decodeBase64(doc.payload);
  if (payload === undefined) throw new VerifyError('ENVELOPE_MALFORMED', 'the payload is not strict base64');
  const message = pae(payloadType, payload);
  const t = now.getTime();
  let sawBadSignature = false;
  let sawInvalidKey: string | undefined;
  for (const s of doc.signatures) {
    if (!isObject(s) || typeof s.sig !== 'string') continue;
    const keyid = typeof s.keyid === 'string' ? s.keyid : '';
    const sig = decodeBase64(s.sig);
    // DSSE keyids are hints; an empty one means "try every listed key".
    const candidates = keyid === '' ? keys : keys.filter((k) => k.keyid === keyid);
    for (const k of candidates) {
      if ((k.notBefore !== undefined && t < k.notBefore) || (k.notAfter !== undefined && t >= k.notAfter)) {
        sawInvalidKey = k.keyid;
        continue;
      }
      let raw: Uint8Array<ArrayBuffer> | undefined;
      try {
        raw = sig === undefined ? undefined : derToRaw(sig);
      } catch {
        raw = undefined;
      }
      const ok =
        raw !== undefined && (await subtle().verify({ name: 'ECDSA', hash: 'SHA-256' }, k.key, raw, message));
      if (ok) return { payload, keyid: k.keyid, envelope: doc };
      sawBadSignature = true;
    }
  }
  if (sawBadSignature) throw new VerifyError('SIGNATURE_INVALID', 'no signature verifies under a listed key');
  if (sawInvalidKey !== undefined) {
    throw new VerifyError(
      'KEY_NOT_VALID',
      `key ${sawInvalidKey} is listed but not valid at ${now.toISOString()}`,
    );
  }
  throw new VerifyError('UNKNOWN_KEY', 'no signature is by a key listed in keys.json');
}

function schema(message: string): VerifyError {
  return new VerifyError('SCHEMA_ERROR', message);
}

/** The fields both signed documents carry; anything else of the payload is checked by the caller. */
function signedFacts(doc: Record<string, unknown>, format: 'v1' | 'v2', entries: number): SignedFacts {
  const issued = isoTime(doc.issuedAt);
  const expires = isoTime(doc.expiresAt);
  if (typeof doc.mirror !== 'string' || doc.mirror === '') throw schema('the payload names no mirror');
  if (!count(doc.version)) throw schema('the payload has no valid version');
  if (issued === undefined || expires === undefined || expires <= issued)
    throw schema('the payload has no valid issuedAt / expiresAt');
  return {
    format,
    mirror: doc.mirror,
    version: doc.version,
    issuedAt: doc.issuedAt as string,
    expiresAt: doc.expiresAt as string,
    entries,
  };
}

function pins(value: unknown, where: string, code: FailureCode): (string | null)[] {
  if (!Array.isArray(value) || value.length !== limits.fanout)
    throw new VerifyError(code, `${where} must pin exactly ${limits.fanout} children`);
  return value.map((pin, i) => {
    if (pin === null || (typeof pin === 'string' && SHA256_HEX.test(pin))) return pin as string | null;
    throw new VerifyError(code, `${where} child ${i} is not a sha256 or null`);
  });
}

/** One entry with exactly the manifest's fields and the shapes the page relies on. */
export function checkModule(raw: unknown, where: string, code: FailureCode): ModuleEntry {
  const bad = (what: string) => new VerifyError(code, `${where}: ${what}`);
  if (!isObject(raw)) throw bad('not an object');
  const { name, tag, ociDigest, sha256, size, format, mirroredAt, kind, abi } = raw;
  if (typeof name !== 'string' || name === '') throw bad('no name');
  if (typeof tag !== 'string') throw bad('no tag');
  if (typeof ociDigest !== 'string' || !SHA256_DIGEST.test(ociDigest)) throw bad('bad ociDigest');
  if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) throw bad('bad sha256');
  if (!count(size)) throw bad('bad size');
  if (typeof format !== 'string') throw bad('no format');
  if (isoTime(mirroredAt) === undefined) throw bad('bad mirroredAt');
  const m: ModuleEntry = { name, tag, ociDigest, sha256, size, format, mirroredAt: mirroredAt as string };
  if (kind !== undefined) {
    if (typeof kind !== 'string') throw bad('bad kind');
    m.kind = kind;
  }
  if (abi !== undefined) {
    if (typeof abi !== 'string') throw bad('bad abi');
    m.abi = abi;
  }
  return m;
}

function inOrder(a: ModuleEntry, b: ModuleEntry): boolean {
  return a.name < b.name || (a.name === b.name && a.tag < b.tag);
}

interface Job {
  pin: string;
  prefix: string;
}

/** RFC 8785 (JCS) for what JSON.parse gives: keys in UTF-16 order, ECMAScript numbers and strings. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (isObject(value))
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(value[k])}`)
      .join(',')}}`;
  return JSON.stringify(value);
}

/**
 * The nodes a small publish carries in the index envelope's `nodes` field, by the sha256 of their
 * canonical (JCS) bytes, read as the agent reads them (inlineNodes in shared/core/manifest/v2.ts):
 * none from a list longer than 16, objects only. The field is not signed: a carried node is used
 * only for a pin, reached from the signed root, that names exactly its hash, and is then checked
 * like a fetched one. One altered in transit matches no pin, so it is never looked up and its
 * node is fetched as if nothing were carried.
 */
export async function carriedNodes(value: unknown): Promise<Map<string, Uint8Array<ArrayBuffer>>> {
  const out = new Map<string, Uint8Array<ArrayBuffer>>();
  if (!Array.isArray(value) || value.length > limits.carriedNodes) return out;
  await Promise.all(
    value.filter(isObject).map(async (node) => {
      const bytes = encoder.encode(canonicalJson(node));
      out.set(await sha256Hex(bytes), bytes);
    }),
  );
  return out;
}

export interface TreeOptions extends Pick<LoadOptions, 'onProgress' | 'concurrency'> {
  /** The index's carried nodes, by the sha256 of their bytes. */
  carried?: NodeBytes;
  /** Nodes kept from an earlier visit, by the pin they were kept under (checked again). */
  kept?: NodeBytes;
}

/**
 * Reads the whole v2 tree from the index's root pins. Each node is hashed and compared with its
 * pin before it is parsed; a page must be the page for its prefix, a bin the bin for its prefix,
 * and every entry of a bin must hash into it. One queue, `concurrency` nodes in flight: a page's
 * children are queued as soon as it is checked, so no level waits for the slowest node of the one
 * above. The first failure settles the walk; nodes still in flight are then ignored.
 */
export async function readTree(
  root: readonly (string | null)[],
  depth: number,
  fetcher: Fetcher,
  options: TreeOptions = {},
): Promise<{ modules: ModuleEntry[]; stats: TreeStats; nodes: NodeBytes }> {
  const limit = Math.max(1, options.concurrency ?? NODE_CONCURRENCY);
  const queue: Job[] = [];
  const enqueue = (prefix: string, children: readonly (string | null)[]) =>
    children.forEach((pin, i) => {
      if (pin !== null) queue.push({ pin, prefix: prefix + i.toString(16) });
    });
  enqueue('', root);
  const bins: [prefix: string, modules: ModuleEntry[]][] = [];
  const stats: TreeStats = { nodes: 0, carried: 0, kept: 0, fetched: 0 };
  const nodes = new Map<string, Uint8Array<ArrayBuffer>>();
  options.onProgress?.(0, queue.length);
  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let active = 0;
    let failed = false;
    const fail = (err: unknown) => {
      failed = true;
      reject(err);
    };
    const start = () => {
      while (!failed && active < limit && next < queue.length) {
        const job = queue[next++]!;
        active++;
        readNode(job, depth, fetcher, options).then(({ node, bytes, from }) => {
          active--;
          if (failed) return;
          try {
            if (node.type === 'page') enqueue(job.prefix, node.children);
            else bins.push([job.prefix, node.modules]);
            nodes.set(job.pin, bytes);
            stats[from]++;
            stats.nodes++;
            options.onProgress?.(stats.nodes, queue.length);
          } catch (err) {
            fail(err);
            return;
          }
          if (active === 0 && next === queue.length) resolve();
          else start();
        }, fail);
      }
    };
    if (queue.length === 0) resolve();
    else start();
  });
  // Prefix order, so the list comes out in bin order whatever order the requests finished in.
  bins.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  return { modules: bins.flatMap(([, modules]) => modules), stats, nodes };
}

type Node = { type: 'page'; children: (string | null)[] } | { type: 'bin'; modules: ModuleEntry[] };

/**
 * One node: carried by the index, else kept from an earlier visit if it still matches its pin,
 * else fetched. Whatever the source, the bytes must match the pin and be the node for the position.
 */
async function readNode(
  job: Job,
  depth: number,
  fetcher: Fetcher,
  sources: TreeOptions,
): Promise<{ node: Node; bytes: Uint8Array<ArrayBuffer>; from: 'carried' | 'kept' | 'fetched' }> {
  const { pin, prefix } = job;
  const isBin = prefix.length === depth;
  const cap = isBin ? limits.binBytes : limits.pageBytes;
  let from: 'carried' | 'kept' | 'fetched' = 'carried';
  let bytes = sources.carried?.get(pin);
  if (bytes === undefined) {
    from = 'kept';
    bytes = sources.kept?.get(pin);
    // A kept copy that no longer matches (storage is not trusted either) is fetched instead.
    if (bytes !== undefined && (bytes.length > cap || (await sha256Hex(bytes)) !== pin)) bytes = undefined;
  }
  if (bytes === undefined) {
    from = 'fetched';
    const res = await fetcher(paths.node(pin));
    if (res.status === 404)
      throw new VerifyError('NODE_MISSING', `node ${prefix} (${pin}) is pinned but missing`);
    if (res.status !== 200) throw new VerifyError('FETCH_FAILED', `node ${prefix}: HTTP ${res.status}`);
    bytes = res.bytes;
  }
  if (bytes.length > cap) throw new VerifyError('NODE_INVALID', `node ${prefix} is over ${cap} bytes`);
  // Carried nodes are filed under their own hash and kept ones were hashed above.
  const actual = from === 'fetched' ? await sha256Hex(bytes) : pin;
  if (actual !== pin) {
    throw new VerifyError(
      'NODE_HASH_MISMATCH',
      `node ${prefix} has sha256 ${actual}, the signed index pins ${pin}`,
    );
  }
  return { node: await decodeNode(bytes, prefix, isBin), bytes, from };
}

/** The checks after the hash: strict shape, type and prefix for the position, bin entries. */
async function decodeNode(bytes: Uint8Array, prefix: string, isBin: boolean): Promise<Node> {
  const doc = parseJson(bytes, `node ${prefix}`, 'NODE_INVALID');
  if (!isObject(doc) || doc.prefix !== prefix)
    throw new VerifyError(
      'NODE_INVALID',
      `node for ${prefix} says it is ${isObject(doc) ? String(doc.prefix) : '?'}`,
    );
  const keys = Object.keys(doc).sort().join(',');
  if (!isBin) {
    if (doc.type !== PAGE_TYPE || keys !== 'children,prefix,type')
      throw new VerifyError('NODE_INVALID', `node ${prefix} is not a page`);
    return { type: 'page', children: pins(doc.children, `page ${prefix}`, 'NODE_INVALID') };
  }
  if (doc.type !== BIN_TYPE || keys !== 'modules,prefix,type' || !Array.isArray(doc.modules))
    throw new VerifyError('NODE_INVALID', `node ${prefix} is not a bin`);
  const modules = doc.modules.map((m, i) => checkModule(m, `bin ${prefix} entry ${i}`, 'NODE_INVALID'));
  // Entries are sorted by name, each name once per tag: one digest per name.
  const byName = new Map<string, Promise<string>>();
  const hashes = await Promise.all(
    modules.map((m) => {
      let hash = byName.get(m.name);
      if (hash === undefined) {
        hash = sha256Hex(encoder.encode(m.name));
        byName.set(m.name, hash);
      }
      return hash;
    }),
  );
  modules.forEach((m, i) => {
    if (!hashes[i]!.startsWith(prefix))
      throw new VerifyError('NODE_INVALID', `entry ${m.name} does not hash into bin ${prefix}`);
    if (i > 0 && !inOrder(modules[i - 1]!, m))
      throw new VerifyError('NODE_INVALID', `bin ${prefix} is out of order at ${m.name}:${m.tag}`);
  });
  return { type: 'bin', modules };
}

/**
 * Everything the page shows as verified: keys.json, then the v2 index (or, on a mirror without
 * one, the v1 latest.json), then the entries. Any failure after the keys are read is a `failed`
 * view carrying what had been established so far (the signing keyid, the signed facts).
 */
export async function loadMirror(fetcher: Fetcher, options: LoadOptions): Promise<MirrorView> {
  let keyid: string | undefined;
  let facts: SignedFacts | undefined;
  try {
    // The index is requested with the keys, not after them: one round trip less.
    const indexRes = fetcher(paths.index);
    indexRes.catch(() => undefined);
    const keysRes = await fetcher(paths.keys);
    if (keysRes.status !== 200)
      throw new VerifyError('KEYS_UNAVAILABLE', `keys.json could not be read (HTTP ${keysRes.status})`);
    let keys = await importKeys(keysRes.bytes);
    if (options.pinnedKeyid !== undefined) {
      keys = keys.filter((k) => k.keyid === options.pinnedKeyid);
      if (keys.length === 0)
        throw new VerifyError('UNKNOWN_KEY', `keys.json does not list the pinned key ${options.pinnedKeyid}`);
    }

    let format: 'v1' | 'v2' = 'v2';
    let res = await indexRes;
    if (res.status === 404) {
      format = 'v1';
      res = await fetcher(paths.latest);
    }
    if (res.status === 404) return { state: 'missing' };
    if (res.status !== 200)
      throw new VerifyError('FETCH_FAILED', `the manifest could not be read (HTTP ${res.status})`);
    const cap = format === 'v2' ? limits.indexBytes : limits.manifestBytes;
    if (res.bytes.length > cap)
      throw new VerifyError('ENVELOPE_MALFORMED', `the manifest is over ${cap} bytes`);

    const verified = await verifyEnvelope(
      res.bytes,
      format === 'v2' ? INDEX_PAYLOAD_TYPE : MANIFEST_PAYLOAD_TYPE,
      keys,
      options.now,
    );
    keyid = verified.keyid;
    const doc = parseJson(verified.payload, 'the signed payload', 'SCHEMA_ERROR');
    if (!isObject(doc)) throw schema('the signed payload is not an object');

    if (format === 'v1') {
      if (doc.type !== MANIFEST_TYPE || !Array.isArray(doc.modules)) throw schema('not a v1 manifest');
      const list = doc.modules;
      facts = signedFacts(doc, 'v1', list.length);
      const modules = list.map((m, i) => checkModule(m, `modules[${i}]`, 'SCHEMA_ERROR'));
      return { state: 'verified', keyid, facts, modules };
    }
    if (doc.type !== INDEX_TYPE) throw schema('not a v2 index');
    if (!count(doc.entries)) throw schema('the index has no valid entry count');
    if (!count(doc.depth) || doc.depth < 1 || doc.depth > limits.maxDepth)
      throw schema('the index has a bad depth');
    facts = signedFacts(doc, 'v2', doc.entries);
    const root = pins(doc.root, 'the index root', 'SCHEMA_ERROR');
    const [carried, kept] = await Promise.all([carriedNodes(verified.envelope.nodes), options.kept]);
    const { onProgress, concurrency } = options;
    const { modules, stats, nodes } = await readTree(root, doc.depth, fetcher, {
      carried,
      ...(kept === undefined ? {} : { kept }),
      ...(onProgress === undefined ? {} : { onProgress }),
      ...(concurrency === undefined ? {} : { concurrency }),
    });
    if (modules.length !== doc.entries) {
      throw new VerifyError(
        'NODE_INVALID',
        `the tree holds ${modules.length} entries, the signed index says ${doc.entries}`,
      );
    }
    return { state: 'verified', keyid, facts, modules, tree: stats, nodes };
  } catch (err) {
    const e =
      err instanceof VerifyError
        ? err
        : new VerifyError('FETCH_FAILED', err instanceof Error ? err.message : String(err));
    return {
      state: 'failed',
      code: e.code,
      message: e.message,
      ...(keyid === undefined ? {} : { keyid }),
      ...(facts === undefined ? {} : { facts }),
    };
  }
}
