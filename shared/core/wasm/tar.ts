/**
 * Finds the entry Istio's compat reader returns: the first one whose base name is `plugin.wasm`.
 * Entries are walked the way Go's archive/tar walks them, since that is what Istio reads the
 * layer with, so both see the same sequence of entries: header formats (V7, USTAR, PAX, GNU,
 * STAR) and their name prefixes, signed or unsigned checksums, every numeric field checked,
 * pax records that replace (not add to) the previous ones, GNU long names, and entries that
 * carry no data whatever their size field says (links, directories, devices, FIFOs).
 *
 * Where Go's reader fails before reaching `plugin.wasm` the error is NotCompatLayer: Istio moves
 * on to the next packaging. The mirror's own rules refuse instead (UNSAFE_ARCHIVE): a
 * `plugin.wasm` that is a link, a directory or any other non-file (Istio would load empty bytes
 * and fail), one outside the archive root (`..`, absolute), and sparse files, which it does not
 * expand. Nothing from the archive is written to disk except that entry's content, and nothing
 * after it is parsed, as Istio stops reading there too.
 */
import { WasmMirrorError } from '../errors.ts';
import { NotCompatLayer } from './formats.ts';

const BLOCK = 512;
/** Go's limit on pax and GNU long-name data (maxSpecialFileSize). */
const MAX_SPECIAL_FILE = 1024 * 1024;
const INT64_MAX = (1n << 63n) - 1n;
/** Types whose data section is empty whatever their size field says (Go's isHeaderOnlyType). */
const HEADER_ONLY: Record<string, string> = {
  '1': 'hard link',
  '2': 'symbolic link',
  '3': 'character device',
  '4': 'block device',
  '5': 'directory',
  '6': 'FIFO',
};

export interface TarEntryReaderOptions {
  /** Base name to look for (`plugin.wasm`). */
  baseName: string;
  /** SIZE_EXCEEDED when the wanted entry is larger. */
  maxEntryBytes: number;
  /** DECOMPRESSION_BOMB when the archive grows past this before the entry is read. */
  maxArchiveBytes: number;
  /** Gets the entry's content in order. */
  sink: (chunk: Uint8Array) => Promise<void> | void;
}

type Phase =
  | { kind: 'header' }
  | { kind: 'skip'; remaining: number }
  | {
      kind: 'meta';
      type: 'x' | 'g' | 'L' | 'K';
      remaining: number;
      padding: number;
      parts: Uint8Array[];
      header: Header;
    }
  | { kind: 'entry'; remaining: number }
  | { kind: 'done' }
  | { kind: 'end' };

interface Header {
  type: string;
  name: string;
  size: bigint;
}

export class TarEntryReader {
  readonly #options: TarEntryReaderOptions;
  #phase: Phase = { kind: 'header' };
  #block: Buffer = Buffer.alloc(0);
  #total = 0;
  // What pending meta entries say about the next entry.
  #pax: Map<string, string> | undefined;
  #longName: string | undefined;

  constructor(options: TarEntryReaderOptions) {
    this.#options = options;
  }

  /** True once the entry has been read whole; later input is ignored. */
  get done(): boolean {
    return this.#phase.kind === 'done';
  }

  async push(input: Uint8Array): Promise<void> {
    if (this.#phase.kind === 'done' || this.#phase.kind === 'end') return;
    this.#total += input.length;
    if (this.#total > this.#options.maxArchiveBytes) {
      throw new WasmMirrorError(
        'DECOMPRESSION_BOMB',
        `archive expands past ${this.#options.maxArchiveBytes} bytes; refusing to read further`,
      );
    }
    let chunk = input;
    while (chunk.length > 0) {
      // #onHeader may end the archive; TypeScript does not see that through the call.
      const phase = this.#phase as Phase;
      switch (phase.kind) {
        case 'done':
        case 'end':
          return;
        case 'header': {
          const need = BLOCK - this.#block.length;
          this.#block = Buffer.concat([this.#block, chunk.subarray(0, need)]);
          chunk = chunk.subarray(Math.min(need, chunk.length));
          if (this.#block.length === BLOCK) {
            const block = this.#block;
            this.#block = Buffer.alloc(0);
            this.#onHeader(block);
            // An entry of the wanted name may be empty: it is done at once.
            if (this.#phase.kind === 'entry' && this.#phase.remaining === 0) this.#phase = { kind: 'done' };
            if (this.#phase.kind === 'meta' && this.#phase.remaining === 0) this.#onMetaEnd(this.#phase);
          }
          break;
        }
        case 'skip': {
          const take = Math.min(phase.remaining, chunk.length);
          phase.remaining -= take;
          chunk = chunk.subarray(take);
          if (phase.remaining === 0) this.#phase = { kind: 'header' };
          break;
        }
        case 'meta': {
          const take = Math.min(phase.remaining, chunk.length);
          phase.parts.push(Buffer.from(chunk.subarray(0, take)));
          phase.remaining -= take;
          chunk = chunk.subarray(take);
          if (phase.remaining === 0) this.#onMetaEnd(phase);
          break;
        }
        case 'entry': {
          const take = Math.min(phase.remaining, chunk.length);
          await this.#options.sink(chunk.subarray(0, take));
          phase.remaining -= take;
          chunk = chunk.subarray(take);
          if (phase.remaining === 0) this.#phase = { kind: 'done' };
          break;
        }
      }
    }
  }

  /** End of the archive's bytes: NotCompatLayer unless the entry was read whole. */
  end(): void {
    const phase = this.#phase;
    if (phase.kind === 'done') return;
    if (phase.kind === 'entry' || phase.kind === 'skip' || phase.kind === 'meta' || this.#block.length > 0) {
      throw new NotCompatLayer(`compat layer's tar archive is truncated`);
    }
    throw new NotCompatLayer(`compat layer has no ${this.#options.baseName}`);
  }

  #onHeader(block: Buffer): void {
    if (block.every((b) => b === 0)) {
      // End of archive. Go also wants a second zero block, but any outcome there is a miss.
      this.#phase = { kind: 'end' };
      return;
    }
    const header = readHeader(block);
    if (header.type === 'x' || header.type === 'g' || header.type === 'L' || header.type === 'K') {
      if (header.size < 0n) throw malformed('negative size');
      if (header.size > BigInt(MAX_SPECIAL_FILE))
        throw new NotCompatLayer('tar metadata entry is over 1 MiB');
      const size = Number(header.size);
      const padding = (BLOCK - (size % BLOCK)) % BLOCK;
      this.#phase = { kind: 'meta', type: header.type, remaining: size, padding, parts: [], header };
      return;
    }
    this.#entry(this.#takePending(header));
  }

  /** Applies pending pax records and long names to an entry's header (Go's mergePAX and friends). */
  #takePending(header: Header): Header {
    const pax = this.#pax;
    const longName = this.#longName;
    this.#pax = undefined;
    this.#longName = undefined;
    const out = { ...header };
    if (pax !== undefined) mergePax(out, pax, true);
    if (longName !== undefined && longName !== '') out.name = longName;
    // Old archives mark directories by a trailing slash on a regular-file type.
    if (out.type === '\0') out.type = out.name.endsWith('/') ? '5' : '0';
    return out;
  }

  #onMetaEnd(phase: Extract<Phase, { kind: 'meta' }>): void {
    const data = Buffer.concat(phase.parts);
    this.#phase = phase.padding > 0 ? { kind: 'skip', remaining: phase.padding } : { kind: 'header' };
    if (phase.type === 'L' || phase.type === 'K') {
      if (phase.type === 'L') this.#longName = cString(data);
      return;
    }
    const records = parsePax(data);
    if (phase.type === 'x') {
      this.#pax = records;
      return;
    }
    // A global header is an entry of its own for Go: named by its records, no data, and it
    // clears what earlier meta entries said.
    this.#pax = undefined;
    this.#longName = undefined;
    const header = { ...phase.header, size: 0n };
    mergePax(header, records, false);
    if (isWanted(header.name, this.#options.baseName)) {
      throw new WasmMirrorError(
        'UNSAFE_ARCHIVE',
        `tar entry '${header.name}' is a pax global header, not a file`,
      );
    }
  }

  #entry(entry: Header): void {
    const headerOnly = HEADER_ONLY[entry.type];
    if (entry.type === 'S') throw new WasmMirrorError('UNSAFE_ARCHIVE', 'tar archive holds a sparse file');
    if (entry.size < 0n && headerOnly === undefined) throw malformed('negative size');
    const size = headerOnly === undefined ? Number(entry.size) : 0;
    const padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (!isWanted(entry.name, this.#options.baseName)) {
      this.#phase = size + padding > 0 ? { kind: 'skip', remaining: size + padding } : { kind: 'header' };
      return;
    }
    const name = entry.name;
    if (headerOnly !== undefined && entry.size > 0n) {
      // Istio reads `size` bytes from an entry that has none, fails, and moves on.
      throw new NotCompatLayer(`tar entry '${name}' is a ${headerOnly} with a data size`);
    }
    if (name.startsWith('/') || name.split('/').includes('..')) {
      throw new WasmMirrorError('UNSAFE_ARCHIVE', `tar entry '${name}' escapes the archive root`);
    }
    if (headerOnly !== undefined) {
      // Istio would load its zero bytes, which are not Wasm.
      throw new WasmMirrorError('UNSAFE_ARCHIVE', `tar entry '${name}' is a ${headerOnly}, not a file`);
    }
    if (entry.type !== '0' && entry.type !== '7') {
      throw new WasmMirrorError('UNSAFE_ARCHIVE', `tar entry '${name}' is not a regular file`);
    }
    if (size > this.#options.maxEntryBytes) {
      throw new WasmMirrorError(
        'SIZE_EXCEEDED',
        `${name} is ${entry.size} bytes, over the ${this.#options.maxEntryBytes}-byte cap`,
      );
    }
    this.#phase = { kind: 'entry', remaining: size };
  }
}

function isWanted(name: string, baseName: string): boolean {
  // Go's filepath.Base on Linux: trailing slashes dropped, then the last element.
  const trimmed = name.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1) === baseName;
}

function malformed(why: string): NotCompatLayer {
  return new NotCompatLayer(`compat layer's tar archive is malformed (${why})`);
}

/** Go's readHeader: format from magic and checksum, every numeric field parsed, name with prefix. */
function readHeader(h: Buffer): Header {
  const stored = parseOctal(h.subarray(148, 156), 'checksum');
  let unsigned = 0n;
  let signed = 0n;
  for (let i = 0; i < BLOCK; i++) {
    const c = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += BigInt(c);
    signed += BigInt(c > 0x7f ? c - 256 : c);
  }
  if (stored !== unsigned && stored !== signed) throw malformed('bad header checksum');

  const magic = h.subarray(257, 263).toString('latin1');
  const version = h.subarray(263, 265).toString('latin1');
  const trailer = h.subarray(508, 512).toString('latin1');
  const format =
    magic === 'ustar\0'
      ? trailer === 'tar\0'
        ? 'star'
        : 'ustar'
      : magic === 'ustar ' && version === ' \0'
        ? 'gnu'
        : 'v7';

  const type = String.fromCharCode(h[156]!);
  let name = cString(h.subarray(0, 100));
  const size = parseNumeric(h.subarray(124, 136), 'size');
  parseNumeric(h.subarray(100, 108), 'mode');
  parseNumeric(h.subarray(108, 116), 'uid');
  parseNumeric(h.subarray(116, 124), 'gid');
  parseNumeric(h.subarray(136, 148), 'mtime');
  if (format !== 'v7') {
    parseNumeric(h.subarray(329, 337), 'devmajor');
    parseNumeric(h.subarray(337, 345), 'devminor');
    let prefix = '';
    if (format === 'ustar') prefix = cString(h.subarray(345, 500));
    if (format === 'star') {
      prefix = cString(h.subarray(345, 476));
      parseNumeric(h.subarray(476, 488), 'atime');
      parseNumeric(h.subarray(488, 500), 'ctime');
    }
    if (format === 'gnu') {
      // GNU keeps access and change times where USTAR has its prefix. Go reads them leniently and,
      // when they do not parse, takes the field as a prefix written by older Go versions.
      try {
        if (h[345] !== 0) parseNumeric(h.subarray(345, 357), 'atime');
        if (h[357] !== 0) parseNumeric(h.subarray(357, 369), 'ctime');
      } catch {
        const s = cString(h.subarray(345, 500));
        if ([...s].every((ch) => ch.charCodeAt(0) < 0x80)) prefix = s;
      }
    }
    if (prefix !== '') name = `${prefix}/${name}`;
  }
  return { type, name, size };
}

/** Go's parser.parseString: up to the first NUL, bytes kept as they are. */
function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString('latin1');
}

/** Go's parseNumeric: base-256 when the top bit is set (two's complement), octal otherwise. */
function parseNumeric(field: Uint8Array, what: string): bigint {
  if (field.length > 0 && (field[0]! & 0x80) !== 0) {
    const inv = (field[0]! & 0x40) !== 0 ? 0xff : 0;
    let x = 0n;
    for (let i = 0; i < field.length; i++) {
      let c = field[i]! ^ inv;
      if (i === 0) c &= 0x7f;
      if (x >> 56n > 0n) throw malformed(`${what} overflows`);
      x = (x << 8n) | BigInt(c);
    }
    if (x >> 63n > 0n) throw malformed(`${what} overflows`);
    return inv === 0xff ? -x - 1n : x;
  }
  return parseOctal(field, what);
}

/** Go's parseOctal: NULs and spaces trimmed at both ends, then an unsigned 64-bit octal number. */
function parseOctal(field: Uint8Array, what: string): bigint {
  let start = 0;
  let end = field.length;
  const pad = (b: number) => b === 0 || b === 0x20;
  while (start < end && pad(field[start]!)) start++;
  while (end > start && pad(field[end - 1]!)) end--;
  if (start === end) return 0n;
  const text = cString(field.subarray(start, end));
  if (!/^[0-7]+$/.test(text)) throw malformed(`${what} is not octal`);
  const value = BigInt(`0o${text}`);
  if (value >> 64n > 0n) throw malformed(`${what} overflows`);
  // Go converts the unsigned value to int64, so the top half reads as negative.
  return value > INT64_MAX ? value - (1n << 64n) : value;
}

/** Go's parsePAX: strict records, `GNU.sparse.*` refused (the mirror does not expand sparse files). */
function parsePax(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let s = data.toString('latin1');
  while (s.length > 0) {
    const space = s.indexOf(' ');
    if (space < 0) throw malformed('pax record without a length');
    const lengthText = s.slice(0, space);
    if (!/^[+-]?\d+$/.test(lengthText)) throw malformed('pax record length');
    const n = Number(lengthText);
    if (n < 5 || n > s.length) throw malformed('pax record length');
    const rest = s.slice(space + 1);
    const inRest = n - (lengthText.length + 1);
    if (inRest <= 0) throw malformed('pax record length');
    if (rest[inRest - 1] !== '\n') throw malformed('pax record not ended by a newline');
    const record = rest.slice(0, inRest - 1);
    s = rest.slice(inRest);
    const eq = record.indexOf('=');
    if (eq <= 0) throw malformed('pax record without a key');
    const key = record.slice(0, eq);
    const value = record.slice(eq + 1);
    const stringKey = key === 'path' || key === 'linkpath' || key === 'uname' || key === 'gname';
    if ((stringKey ? value : key).includes('\0')) throw malformed('NUL in a pax record');
    if (key.startsWith('GNU.sparse.'))
      throw new WasmMirrorError('UNSAFE_ARCHIVE', 'tar archive holds a sparse file');
    records.set(key, value);
  }
  return records;
}

/** Go's mergePAX: empty values keep the header's; numbers and times must parse (for entries). */
function mergePax(header: Header, records: Map<string, string>, strict: boolean): void {
  for (const [key, value] of records) {
    if (value === '') continue;
    let ok = true;
    switch (key) {
      case 'path':
        header.name = value;
        break;
      case 'uid':
      case 'gid':
        ok = isInt64(value);
        break;
      case 'atime':
      case 'mtime':
      case 'ctime': {
        const [seconds, fraction] = splitOnce(value, '.');
        ok = isInt64(seconds) && (fraction === undefined || /^\d*$/.test(fraction));
        break;
      }
      case 'size':
        ok = isInt64(value);
        if (ok) header.size = BigInt(value);
        break;
    }
    if (!ok && strict) throw malformed(`pax ${key} '${value}'`);
  }
}

function isInt64(text: string): boolean {
  if (!/^[+-]?\d+$/.test(text)) return false;
  const n = BigInt(text);
  return n <= INT64_MAX && n >= -INT64_MAX - 1n;
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator);
  return at < 0 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)];
}
