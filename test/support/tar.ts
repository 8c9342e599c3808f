/**
 * Builds tar archives in memory (ustar, pax headers for long names), including hostile ones:
 * `../plugin.wasm`, a symlink or hard link named `plugin.wasm`, and so on.
 */
import { gzipSync } from 'node:zlib';

export interface TarEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink';
  content?: Uint8Array | string;
  linkname?: string;
  /** Declared size, when a test wants it to differ from the content's. */
  size?: number;
}

const BLOCK = 512;

/** A tar archive with the two zero blocks at the end. */
export function makeTar(entries: TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const entry of entries) {
    const content =
      typeof entry.content === 'string' ? new TextEncoder().encode(entry.content) : entry.content;
    const body = content ?? new Uint8Array(0);
    if (Buffer.byteLength(entry.name) > 100) {
      const record = paxRecord('path', entry.name);
      parts.push(header({ name: 'PaxHeader', typeflag: 'x', size: record.length }), pad(record));
    }
    const typeflag = { file: '0', dir: '5', symlink: '2', hardlink: '1' }[entry.type ?? 'file'];
    parts.push(
      header({
        name: entry.name.slice(0, 100),
        typeflag,
        size: entry.size ?? (entry.type === undefined || entry.type === 'file' ? body.length : 0),
        linkname: entry.linkname ?? '',
      }),
    );
    if (body.length > 0) parts.push(pad(body));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return Buffer.concat(parts);
}

/** makeTar + gzip. */
export function makeTarGz(entries: TarEntry[]): Uint8Array {
  return new Uint8Array(gzipSync(makeTar(entries)));
}

function paxRecord(key: string, value: string): Uint8Array {
  const body = ` ${key}=${value}\n`;
  let len = Buffer.byteLength(body) + 1;
  while (String(len).length + Buffer.byteLength(body) !== len) len++;
  return new TextEncoder().encode(`${len}${body}`);
}

function header(h: { name: string; typeflag: string; size: number; linkname?: string }): Uint8Array {
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
  buf.write(h.typeflag, 156, 'ascii');
  buf.write(h.linkname ?? '', 157, 100, 'utf8');
  buf.write('ustar\0', 257, 'ascii');
  buf.write('00', 263, 'ascii');
  buf.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of buf) sum += b;
  buf.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return buf;
}

function pad(bytes: Uint8Array): Uint8Array {
  const rem = bytes.length % BLOCK;
  return rem === 0 ? bytes : Buffer.concat([bytes, new Uint8Array(BLOCK - rem)]);
}
