/**
 * Engine validation of a core module already written to a file, without instantiating it and
 * without holding the module twice.
 *
 * V8 keeps its own copy of the bytes it compiles (and the streaming compiler buffers more), so a
 * 100 MiB module would cost 300+ MiB. Instead the module is validated as a "skeleton": every
 * section except custom sections (which never affect validity) and the payload bytes of data
 * segments (which the spec does not constrain) — a module is valid exactly when its skeleton is.
 * The skeleton is read straight from the file into one buffer and handed to
 * `WebAssembly.validate`, which decodes and validates every function like `compile` does but
 * generates no code.
 */
import { type FileHandle, open } from 'node:fs/promises';
import { WasmMirrorError } from '../errors.ts';

const DATA_SECTION = 11;
const WINDOW = 64 * 1024;
/** Below this size a failed module is compiled once more, only to get V8's error message. */
const EXPLAIN_LIMIT = 16 * 1024 * 1024;

export interface SectionSpan {
  id: number;
  /** File offset of the section's content (after id and size). */
  start: number;
  size: number;
}

type Part = { bytes: Uint8Array } | { offset: number; length: number };

export async function validateCoreModuleFile(path: string, sections: SectionSpan[]): Promise<void> {
  const fh = await open(path, 'r');
  let skeleton: Uint8Array<ArrayBuffer>;
  try {
    const parts: Part[] = [{ bytes: Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00) }];
    for (const s of sections) {
      const data = s.id === DATA_SECTION ? await elideDataPayloads(fh, s) : undefined;
      if (data !== undefined) {
        parts.push({ bytes: Uint8Array.of(s.id) }, { bytes: leb128(data.length) }, { bytes: data });
      } else {
        parts.push(
          { bytes: Uint8Array.of(s.id) },
          { bytes: leb128(s.size) },
          { offset: s.start, length: s.size },
        );
      }
    }
    const total = parts.reduce((n, p) => n + ('bytes' in p ? p.bytes.length : p.length), 0);
    skeleton = new Uint8Array(new ArrayBuffer(total));
    let pos = 0;
    for (const p of parts) {
      if ('bytes' in p) {
        skeleton.set(p.bytes, pos);
        pos += p.bytes.length;
      } else {
        await readFully(fh, skeleton, pos, p.length, p.offset);
        pos += p.length;
      }
    }
  } finally {
    await fh.close();
  }
  if (WebAssembly.validate(skeleton)) return;
  let detail = 'WebAssembly validation failed';
  if (skeleton.length <= EXPLAIN_LIMIT) {
    detail = await WebAssembly.compile(skeleton).then(
      () => detail,
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
  }
  throw new WasmMirrorError('INVALID_WASM', `module does not validate: ${detail}`);
}

async function readFully(
  fh: FileHandle,
  into: Uint8Array,
  at: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(into, at + done, length - done, position + done);
    if (bytesRead === 0)
      throw new WasmMirrorError('INVALID_WASM', 'module file is shorter than its sections');
    done += bytesRead;
  }
}

class NeedFallback extends Error {}

/**
 * The data section with every segment's payload cut to zero bytes, or undefined when something
 * is not understood (then the section is validated verbatim: correct, only bigger).
 */
async function elideDataPayloads(fh: FileHandle, section: SectionSpan): Promise<Uint8Array | undefined> {
  const end = section.start + section.size;
  const out: Uint8Array[] = [];
  let window = Buffer.alloc(0);
  let windowStart = section.start;
  let pos = section.start;

  const load = async () => {
    const length = Math.min(WINDOW, end - pos);
    window = Buffer.alloc(length);
    if (length > 0) await readFully(fh, window, 0, length, pos);
    windowStart = pos;
  };
  const byte = (): number => {
    const i = pos - windowStart;
    if (i >= window.length) throw new NeedFallback();
    pos++;
    return window[i]!;
  };
  const leb = (maxBytes: number): number => {
    let value = 0;
    for (let k = 0; k < maxBytes; k++) {
      const b = byte();
      value += (b & 0x7f) * 2 ** (7 * k);
      if ((b & 0x80) === 0) return value;
    }
    throw new NeedFallback();
  };
  const skip = (n: number) => {
    for (let k = 0; k < n; k++) byte();
  };
  const constExpr = () => {
    for (;;) {
      const op = byte();
      if (op === 0x0b) return;
      if (op === 0x41 || op === 0x23 || op === 0xd2) leb(5);
      else if (op === 0x42) leb(10);
      else if (op === 0x43) skip(4);
      else if (op === 0x44) skip(8);
      else if (op === 0xd0) leb(5);
      else if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d || op === 0x7e)
        continue;
      else if (op === 0xfd && leb(5) === 12) skip(16);
      else throw new NeedFallback();
    }
  };

  try {
    await load();
    const countStart = pos;
    const count = leb(5);
    out.push(window.subarray(countStart - windowStart, pos - windowStart));
    for (let k = 0; k < count; k++) {
      if (end - pos < 1) return undefined;
      if (pos - windowStart > WINDOW - 4096) await load();
      const segStart = pos;
      const flag = leb(5);
      if (flag === 0) constExpr();
      else if (flag === 2) {
        leb(5);
        constExpr();
      } else if (flag !== 1) return undefined;
      const headerEnd = pos;
      const length = leb(5);
      if (pos + length > end) return undefined;
      out.push(
        Buffer.from(window.subarray(segStart - windowStart, headerEnd - windowStart)),
        Uint8Array.of(0x00),
      );
      pos += length; // the payload itself is never read
      if (pos > windowStart + window.length || pos - windowStart > WINDOW - 4096) await load();
    }
    if (pos !== end) return undefined;
  } catch (err) {
    if (err instanceof NeedFallback) return undefined;
    throw err;
  }
  return Buffer.concat(out);
}

function leb128(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return Uint8Array.from(out);
}
