/**
 * Builds tar archives and gzip members in memory, including hostile and unusual ones:
 * `../plugin.wasm`, a symlink or hard link named `plugin.wasm`, a directory declaring a size,
 * pax and GNU long-name headers, GNU or V7 headers, signed checksums, gzip headers with long
 * names or a header checksum, concatenated members.
 */
import { crc32, deflateRawSync, gzipSync } from 'node:zlib';

export interface TarEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo';
  /** Raw type flag, overriding `type` (e.g. 'g', 'x', 'L', '\0', 'S'). */
  typeflag?: string;
  content?: Uint8Array | string;
  linkname?: string;
  /** Declared size, when a test wants it to differ from the content's. */
  size?: number;
  /** Pax records written in an 'x' header just before this entry. */
  pax?: Record<string, string>;
  /** Write the name through a GNU 'L' long-name entry (the header keeps a stand-in). */
  gnuLongName?: boolean;
  /** Header magic: ustar (default), GNU ("ustar  ") or none (V7). */
  magic?: 'ustar' | 'gnu' | 'v7';
  /** Raw bytes for the ustar prefix field (offset 345). */
  prefix?: string;
  /** Checksum over signed bytes, as some old tars wrote it. */
  signedChecksum?: boolean;
}

const BLOCK = 512;

/** A tar archive with the two zero blocks at the end. */
export function makeTar(entries: TarEntry[], opts: { end?: boolean } = {}): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const content =
      typeof entry.content === 'string' ? new TextEncoder().encode(entry.content) : entry.content;
    const body = content ?? new Uint8Array(0);
    const pax = { ...entry.pax };
    if (Buffer.byteLength(entry.name) > 100 && entry.gnuLongName !== true) pax.path = entry.name;
    if (Object.keys(pax).length > 0) {
      const records = paxRecords(pax);
      parts.push(header({ name: 'PaxHeader', typeflag: 'x', size: records.length }), pad(records));
    }
    if (entry.gnuLongName === true) {
      const longName = new TextEncoder().encode(`${entry.name}\0`);
      parts.push(header({ name: '././@LongLink', typeflag: 'L', size: longName.length, magic: 'gnu' }));
      parts.push(pad(longName));
    }
    const typeflag =
      entry.typeflag ?? { file: '0', dir: '5', symlink: '2', hardlink: '1', fifo: '6' }[entry.type ?? 'file'];
    const isFile = entry.typeflag === undefined && (entry.type === undefined || entry.type === 'file');
    parts.push(
      header({
        name: entry.gnuLongName === true ? 'plugin.longname' : entry.name.slice(0, 100),
        typeflag,
        size: entry.size ?? (isFile || entry.typeflag !== undefined ? body.length : 0),
        linkname: entry.linkname ?? '',
        ...(entry.magic === undefined ? {} : { magic: entry.magic }),
        ...(entry.prefix === undefined ? {} : { prefix: entry.prefix }),
        ...(entry.signedChecksum === undefined ? {} : { signedChecksum: entry.signedChecksum }),
      }),
    );
    if (body.length > 0) parts.push(pad(body));
  }
  if (opts.end !== false) parts.push(new Uint8Array(BLOCK * 2));
  return Buffer.concat(parts);
}

/** makeTar + gzip. */
export function makeTarGz(entries: TarEntry[]): Uint8Array {
  return new Uint8Array(gzipSync(makeTar(entries)));
}

/** Pax extended-header data for `records` (each "<len> key=value\n"). */
export function paxRecords(records: Record<string, string>): Uint8Array {
  return Buffer.concat(
    Object.entries(records).map(([key, value]) => {
      const body = ` ${key}=${value}\n`;
      let len = Buffer.byteLength(body) + 1;
      while (String(len).length + Buffer.byteLength(body) !== len) len++;
      return Buffer.from(`${len}${body}`);
    }),
  );
}

export interface GzipHeaderOptions {
  /** FNAME field (written with its NUL). */
  name?: string;
  /** FCOMMENT field. */
  comment?: string;
  /** FEXTRA field. */
  extra?: Uint8Array;
  /** Write FHCRC; `'wrong'` writes a checksum that does not match. */
  headerCrc?: boolean | 'wrong';
  /** Reserved flag bits to set (Go ignores them, zlib refuses them). */
  reservedFlags?: number;
}

/** One gzip member of `data`, with the header fields a test asks for. */
export function gzipMember(data: Uint8Array, opts: GzipHeaderOptions = {}): Uint8Array {
  let flags = opts.reservedFlags ?? 0;
  const fields: Uint8Array[] = [];
  if (opts.extra !== undefined) {
    flags |= 0x04;
    const len = Buffer.alloc(2);
    len.writeUInt16LE(opts.extra.length);
    fields.push(len, opts.extra);
  }
  if (opts.name !== undefined) {
    flags |= 0x08;
    fields.push(Buffer.from(`${opts.name}\0`, 'latin1'));
  }
  if (opts.comment !== undefined) {
    flags |= 0x10;
    fields.push(Buffer.from(`${opts.comment}\0`, 'latin1'));
  }
  if (opts.headerCrc !== undefined && opts.headerCrc !== false) flags |= 0x02;
  const head = Buffer.concat([Buffer.from([0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3]), ...fields]);
  const parts: Uint8Array[] = [head];
  if ((flags & 0x02) !== 0) {
    const crc = Buffer.alloc(2);
    crc.writeUInt16LE((crc32(head) + (opts.headerCrc === 'wrong' ? 1 : 0)) & 0xffff);
    parts.push(crc);
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(crc32(data), 0);
  trailer.writeUInt32LE(data.length % 2 ** 32, 4);
  parts.push(deflateRawSync(data), trailer);
  return new Uint8Array(Buffer.concat(parts));
}

function header(h: {
  name: string;
  typeflag: string;
  size: number;
  linkname?: string;
  magic?: 'ustar' | 'gnu' | 'v7';
  prefix?: string;
  signedChecksum?: boolean;
}): Uint8Array {
  const buf = Buffer.alloc(BLOCK);
  buf.write(h.name, 0, 100, 'utf8');
  buf.write('0000644\0', 100, 'ascii');
  buf.write('0000000\0', 108, 'ascii');
  buf.write('0000000\0', 116, 'ascii');
  buf.write(`${h.size.toString(8).padStart(11, '0')}\0`, 124, 'ascii');
  buf.write(
    `${Math.floor(Date.UTC(2026, 0, 1) / 1000)
      .toString(8)
      .padStart(11, '0')}\0`,
    136,
    'ascii',
  );
  buf.write(h.typeflag, 156, 'latin1');
  buf.write(h.linkname ?? '', 157, 100, 'utf8');
  const magic = h.magic ?? 'ustar';
  if (magic === 'ustar') buf.write('ustar\x0000', 257, 'latin1');
  if (magic === 'gnu') buf.write('ustar  \0', 257, 'latin1');
  if (h.prefix !== undefined) buf.write(h.prefix, 345, 155, 'latin1');
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of buf) sum += h.signedChecksum === true && b > 0x7f ? b - 256 : b;
  buf.write(`${(sum >>> 0).toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return buf;
}

function pad(bytes: Uint8Array): Uint8Array {
  const rem = bytes.length % BLOCK;
  return rem === 0 ? bytes : Buffer.concat([bytes, new Uint8Array(BLOCK - rem)]);
}
