/**
 * A small streaming tar reader that pulls one regular file out by base name. It never creates
 * anything on disk from the archive: links and `..` paths are refused when they carry the wanted
 * name and otherwise skipped. Understands ustar (prefix), GNU long names and pax `path`/`size`.
 */
import { WasmMirrorError } from '../errors.ts';

const BLOCK = 512;
const MAX_META_ENTRY = 1024 * 1024;

export interface ExtractOptions {
  /** Base name to look for (`plugin.wasm`). */
  baseName: string;
  /** SIZE_EXCEEDED when the wanted entry is larger. */
  maxEntryBytes: number;
  /** DECOMPRESSION_BOMB when the archive (as read, i.e. after gunzip) grows past this. */
  maxArchiveBytes: number;
}

export interface ExtractResult {
  found: boolean;
  size: number;
}

type Body =
  | { kind: 'skip' }
  | { kind: 'file' }
  | { kind: 'meta'; type: 'longname' | 'pax'; parts: Uint8Array[] };

/**
 * Reads the whole archive from `source` (so a caller that verifies a digest upstream sees every
 * byte), writing the wanted entry's content to `sink` in order.
 */
export async function extractByBaseName(
  source: AsyncIterable<Uint8Array>,
  sink: (chunk: Uint8Array) => Promise<void> | void,
  options: ExtractOptions,
): Promise<ExtractResult> {
  let total = 0;
  let header = Buffer.alloc(0);
  let remaining = 0; // body bytes left in the current entry
  let padding = 0;
  let body = { kind: 'skip' } as Body;
  let ended = false;
  let found = false;
  let size = 0;
  let longName: string | undefined;
  let paxPath: string | undefined;
  let paxSize: number | undefined;

  const unsafe = (why: string) => new WasmMirrorError('UNSAFE_ARCHIVE', why);

  const onHeader = (h: Buffer): void => {
    if (h.every((b) => b === 0)) {
      ended = true;
      return;
    }
    if (!checksumOk(h)) throw unsafe('malformed tar header (bad checksum)');
    const type = String.fromCharCode(h[156] ?? 0);
    let name = longName ?? paxPath ?? headerName(h);
    const declared = paxSize ?? parseNumber(h.subarray(124, 136));
    longName = undefined;
    paxPath = undefined;
    paxSize = undefined;
    if (declared === undefined) throw unsafe('malformed tar header (size)');
    remaining = declared;
    padding = (BLOCK - (declared % BLOCK)) % BLOCK;

    if (type === 'L' || type === 'x') {
      if (declared > MAX_META_ENTRY) throw unsafe('oversized tar metadata entry');
      body = { kind: 'meta', type: type === 'L' ? 'longname' : 'pax', parts: [] };
      return;
    }
    body = { kind: 'skip' };
    name = name.replace(/\/+$/, '');
    const segments = name.split('/');
    const base = segments[segments.length - 1] ?? '';
    if (base !== options.baseName) return;
    if (name.startsWith('/') || segments.includes('..')) {
      throw unsafe(`tar entry '${name}' escapes the archive root`);
    }
    if (type === '1' || type === '2')
      throw unsafe(`tar entry '${name}' is a ${type === '2' ? 'symbolic' : 'hard'} link`);
    if (type === '5') return; // a directory of that name is not the file
    if (type !== '0' && type !== '\0' && type !== '7')
      throw unsafe(`tar entry '${name}' is not a regular file`);
    if (found) throw unsafe(`more than one '${options.baseName}' in the archive`);
    if (declared > options.maxEntryBytes) {
      throw new WasmMirrorError(
        'SIZE_EXCEEDED',
        `${name} is ${declared} bytes, over the ${options.maxEntryBytes}-byte cap`,
      );
    }
    found = true;
    size = declared;
    body = { kind: 'file' };
  };

  const onMetaEnd = (meta: { type: 'longname' | 'pax'; parts: Uint8Array[] }): void => {
    const bytes = Buffer.concat(meta.parts);
    if (meta.type === 'longname') {
      longName = bytes.toString('utf8').replace(/\0.*$/s, '');
      return;
    }
    const pax = parsePax(bytes);
    if (pax === undefined) throw unsafe('malformed pax header');
    if (pax.path !== undefined) paxPath = pax.path;
    if (pax.size !== undefined) {
      if (!/^\d+$/.test(pax.size)) throw unsafe('malformed pax size');
      paxSize = Number(pax.size);
    }
  };

  for await (const input of source) {
    total += input.length;
    if (total > options.maxArchiveBytes) {
      throw new WasmMirrorError(
        'DECOMPRESSION_BOMB',
        `archive expands past ${options.maxArchiveBytes} bytes; refusing to read further`,
      );
    }
    let chunk: Uint8Array = input;
    while (chunk.length > 0 && !ended) {
      if (remaining > 0) {
        const take = Math.min(remaining, chunk.length);
        const part = chunk.subarray(0, take);
        if (body.kind === 'file') await sink(part);
        else if (body.kind === 'meta') body.parts.push(Buffer.from(part));
        remaining -= take;
        chunk = chunk.subarray(take);
        if (remaining === 0 && body.kind === 'meta') onMetaEnd(body);
        continue;
      }
      if (padding > 0) {
        const skip = Math.min(padding, chunk.length);
        padding -= skip;
        chunk = chunk.subarray(skip);
        continue;
      }
      const need = BLOCK - header.length;
      header = Buffer.concat([header, chunk.subarray(0, need)]);
      chunk = chunk.subarray(Math.min(need, chunk.length));
      if (header.length === BLOCK) {
        const h = header;
        header = Buffer.alloc(0);
        onHeader(h);
        if (remaining === 0 && body.kind === 'meta') onMetaEnd(body);
      }
    }
  }
  if (!ended && (remaining > 0 || header.length > 0)) throw unsafe('tar archive is truncated');
  return { found, size };
}

function headerName(h: Buffer): string {
  const name = cString(h.subarray(0, 100));
  const magic = h.subarray(257, 263).toString('latin1');
  if (magic.startsWith('ustar')) {
    const prefix = cString(h.subarray(345, 500));
    if (prefix !== '') return `${prefix}/${name}`;
  }
  return name;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString('utf8');
}

/** Octal (NUL/space terminated) or GNU base-256 numbers. */
function parseNumber(field: Uint8Array): number | undefined {
  if (((field[0] ?? 0) & 0x80) !== 0) {
    let value = (field[0] ?? 0) & 0x7f;
    for (let i = 1; i < field.length; i++) value = value * 256 + (field[i] ?? 0);
    return Number.isSafeInteger(value) ? value : undefined;
  }
  const text = Buffer.from(field)
    .toString('latin1')
    .replace(/[\0 ]+$/g, '')
    .replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) return undefined;
  return Number.parseInt(text, 8);
}

function checksumOk(h: Buffer): boolean {
  const stored = parseNumber(h.subarray(148, 156));
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] ?? 0);
  return stored === sum;
}

function parsePax(bytes: Buffer): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  let p = 0;
  while (p < bytes.length) {
    const space = bytes.indexOf(0x20, p);
    if (space < 0) return undefined;
    const len = Number(bytes.subarray(p, space).toString('latin1'));
    if (!Number.isSafeInteger(len) || len <= space - p || p + len > bytes.length) return undefined;
    const record = bytes.subarray(space + 1, p + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (eq < 0) return undefined;
    out[record.slice(0, eq)] = record.slice(eq + 1);
    p += len;
  }
  return out;
}
