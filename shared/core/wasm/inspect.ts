/**
 * Streaming checks of a Wasm binary as its bytes go by: the `\0asm` magic and version (core module
 * or component), a structural walk of the top-level sections, and the core export names (for the
 * proxy-wasm ABI). Nothing is buffered beyond one section header and the export section.
 */

import type { WasmKind } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';

const MAGIC = [0x00, 0x61, 0x73, 0x6d];
const CORE_VERSION = [0x01, 0x00, 0x00, 0x00];
const COMPONENT_VERSION = [0x0d, 0x00, 0x01, 0x00];
const MAX_CORE_SECTION_ID = 13; // 13: tag section (exception handling)
const MAX_COMPONENT_SECTION_ID = 12;
const EXPORT_SECTION = 7;
const MAX_EXPORT_SECTION = 16 * 1024 * 1024;
export const PROXY_ABI_PREFIX = 'proxy_abi_version_';

function checkMagic(header: ArrayLike<number>): void {
  if (header.length < 4 || MAGIC.some((b, i) => header[i] !== b)) {
    throw new WasmMirrorError('NOT_WASM', 'content does not start with the Wasm magic \\0asm');
  }
}

export function kindOfHeader(header: Uint8Array): WasmKind {
  checkMagic(header);
  if (header.length < 8) throw new WasmMirrorError('INVALID_WASM', 'truncated Wasm header');
  if (CORE_VERSION.every((b, i) => header[4 + i] === b)) return 'module';
  if (COMPONENT_VERSION.every((b, i) => header[4 + i] === b)) return 'component';
  const version = Buffer.from(header.subarray(4, 8)).toString('hex');
  throw new WasmMirrorError('INVALID_WASM', `unsupported Wasm version/layer bytes ${version}`);
}

type Phase = 'header' | 'id' | 'size' | 'body';

/** Feed it every byte in order with `push`, then call `end`. Throws NOT_WASM / INVALID_WASM. */
export class WasmInspector {
  kind: WasmKind | undefined;
  readonly exports: string[] = [];
  #phase: Phase = 'header';
  #header: number[] = [];
  #sectionId = 0;
  #sizeValue = 0;
  #sizeShift = 0;
  #remaining = 0;
  #capture: Uint8Array[] | undefined;
  #nestedHeader: number[] | undefined;
  #nestedExpect: number[] | undefined;
  #offset = 0;
  /** Core modules: where each non-custom section's content lies in the file, in order. */
  readonly sections: { id: number; start: number; size: number }[] = [];

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      switch (this.#phase) {
        case 'header': {
          this.#header.push(chunk[i++]!);
          if (this.#header.length === 4) checkMagic(this.#header); // fail fast on the magic
          if (this.#header.length === 8) {
            this.kind = kindOfHeader(Uint8Array.from(this.#header));
            this.#phase = 'id';
          }
          break;
        }
        case 'id': {
          const id = chunk[i++]!;
          const max = this.kind === 'component' ? MAX_COMPONENT_SECTION_ID : MAX_CORE_SECTION_ID;
          if (id > max) this.#fail(`unknown section id ${id}`);
          this.#sectionId = id;
          this.#sizeValue = 0;
          this.#sizeShift = 0;
          this.#phase = 'size';
          break;
        }
        case 'size': {
          const byte = chunk[i++]!;
          if (this.#sizeShift === 28 && (byte & 0x70) !== 0) this.#fail('section size does not fit in u32');
          this.#sizeValue += (byte & 0x7f) * 2 ** this.#sizeShift;
          this.#sizeShift += 7;
          if ((byte & 0x80) !== 0) {
            if (this.#sizeShift > 28) this.#fail('malformed section size');
            break;
          }
          this.#startBody(this.#sizeValue, this.#offset + i);
          break;
        }
        case 'body': {
          const take = Math.min(this.#remaining, chunk.length - i);
          const part = chunk.subarray(i, i + take);
          this.#capture?.push(part);
          if (this.#nestedHeader !== undefined && this.#nestedHeader.length < 8) {
            for (const b of part.subarray(0, 8 - this.#nestedHeader.length)) this.#nestedHeader.push(b);
          }
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#endBody();
          break;
        }
      }
    }
    this.#offset += chunk.length;
  }

  /** Call after the last byte: the binary must end exactly at a section boundary. */
  end(): WasmKind {
    if (this.#phase === 'header') {
      if (this.#header.length < 4) throw new WasmMirrorError('NOT_WASM', 'content is too short to be Wasm');
      throw new WasmMirrorError('INVALID_WASM', 'truncated Wasm header');
    }
    if (this.#phase !== 'id') this.#fail('binary ends inside a section');
    return this.kind!;
  }

  get proxyAbi(): string | undefined {
    return this.exports.find((name) => name.startsWith(PROXY_ABI_PREFIX));
  }

  #startBody(size: number, start: number): void {
    if (this.kind === 'module' && this.#sectionId !== 0) {
      // Each non-custom section appears at most once, which also bounds this list.
      if (this.sections.some((s) => s.id === this.#sectionId))
        this.#fail(`duplicate section id ${this.#sectionId}`);
      this.sections.push({ id: this.#sectionId, start, size });
    }
    this.#remaining = size;
    this.#phase = 'body';
    this.#capture = undefined;
    this.#nestedHeader = undefined;
    if (this.kind === 'module' && this.#sectionId === EXPORT_SECTION) {
      if (size > MAX_EXPORT_SECTION) this.#fail('export section is unreasonably large');
      this.#capture = [];
    }
    if (this.kind === 'component' && (this.#sectionId === 1 || this.#sectionId === 4)) {
      // Nested core modules and components are whole binaries: check their headers too.
      this.#nestedHeader = [];
      this.#nestedExpect = this.#sectionId === 1 ? CORE_VERSION : COMPONENT_VERSION;
    }
    if (size === 0) this.#endBody();
  }

  #endBody(): void {
    if (this.#capture !== undefined) this.#parseExports(Buffer.concat(this.#capture));
    if (this.#nestedHeader !== undefined) {
      const h = this.#nestedHeader;
      const ok =
        h.length === 8 &&
        MAGIC.every((b, k) => h[k] === b) &&
        this.#nestedExpect!.every((b, k) => h[4 + k] === b);
      if (!ok) this.#fail(`nested ${this.#sectionId === 1 ? 'core module' : 'component'} has a bad header`);
    }
    this.#capture = undefined;
    this.#nestedHeader = undefined;
    this.#phase = 'id';
  }

  #parseExports(bytes: Uint8Array): void {
    let p = 0;
    const u32 = (): number => {
      let value = 0;
      for (let shift = 0; shift < 35; shift += 7) {
        if (p >= bytes.length) this.#fail('truncated export section');
        const b = bytes[p++]!;
        value += (b & 0x7f) * 2 ** shift;
        if ((b & 0x80) === 0) return value;
      }
      return this.#fail('malformed LEB128 in export section');
    };
    const count = u32();
    const decoder = new TextDecoder('utf-8', { fatal: true });
    for (let k = 0; k < count; k++) {
      const len = u32();
      if (p + len > bytes.length) this.#fail('truncated export name');
      let name: string;
      try {
        name = decoder.decode(bytes.subarray(p, p + len));
      } catch {
        this.#fail('export name is not UTF-8');
      }
      p += len;
      if (p >= bytes.length) this.#fail('truncated export');
      p++; // kind
      u32(); // index
      this.exports.push(name);
    }
    if (p !== bytes.length) this.#fail('export section has trailing bytes');
  }

  #fail(why: string): never {
    throw new WasmMirrorError('INVALID_WASM', `${why} (near byte ${this.#offset})`);
  }
}
