/**
 * Wasm fixtures built in the test: `buildWasm(wat)` through wabt's `wat2wasm`, a proxy-wasm-looking
 * filter, a minimal component, and large modules assembled byte by byte (for size caps and bench).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Compiles WAT text to a binary module with `wat2wasm` (throws with wabt's message on bad WAT). */
export function buildWasm(wat: string): Uint8Array<ArrayBuffer> {
  const dir = mkdtempSync(join(tmpdir(), 'wm-wat-'));
  try {
    writeFileSync(join(dir, 'in.wat'), wat);
    execFileSync('wat2wasm', [join(dir, 'in.wat'), '-o', join(dir, 'out.wasm')], { stdio: 'pipe' });
    return new Uint8Array(readFileSync(join(dir, 'out.wasm')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** WAT of a module shaped like a proxy-wasm filter: exports `proxy_abi_version_0_2_1` and friends. */
export function proxyWasmWat(opts: { abi?: string; marker?: string } = {}): string {
  const abi = opts.abi ?? 'proxy_abi_version_0_2_1';
  const marker = opts.marker ?? 'wasm-mirror test filter';
  return `(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "${marker.replace(/["\\]/g, '')}")
  (func (export "${abi}"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024)))
`;
}

/** A proxy-wasm-looking module; `marker` changes the bytes so tests can tell modules apart. */
export function proxyWasmModule(opts: { abi?: string; marker?: string } = {}): Uint8Array<ArrayBuffer> {
  return buildWasm(proxyWasmWat(opts));
}

/** A small valid component (layer 1): header, then one core module section holding `(module)`. */
export function minimalComponent(): Uint8Array<ArrayBuffer> {
  const core = buildWasm('(module (func (export "run")))');
  return concat([
    Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00),
    Uint8Array.of(0x01),
    leb128(core.length),
    core,
  ]);
}

/**
 * A valid core module of exactly `totalBytes` bytes: a proxy-wasm ABI export and one active data
 * segment filled with random bytes (incompressible, like real code is for gzip).
 */
export function largeWasm(totalBytes: number): Uint8Array<ArrayBuffer> {
  const head = [
    Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
    section(1, Uint8Array.of(0x01, 0x60, 0x00, 0x00)), // type: () -> ()
    section(3, Uint8Array.of(0x01, 0x00)), // one function of type 0
  ];
  const exportName = new TextEncoder().encode('proxy_abi_version_0_2_1');
  const exports = section(
    7,
    concat([Uint8Array.of(0x01), leb128(exportName.length), exportName, Uint8Array.of(0x00, 0x00)]),
  );
  const code = section(10, Uint8Array.of(0x01, 0x02, 0x00, 0x0b));
  const fixed = concat([...head, exports, code]);
  // Solve for the payload size: data section = id + leb(size) + [count, flags, i32.const 0 end, leb(n), n].
  let n = totalBytes - fixed.length - 32;
  for (;;) {
    const pages = Math.max(1, Math.ceil(n / 65536));
    const memory = section(5, concat([Uint8Array.of(0x01, 0x00), leb128(pages)]));
    const segHeader = concat([Uint8Array.of(0x01, 0x00, 0x41, 0x00, 0x0b), leb128(n)]);
    const dataSectionHead = concat([Uint8Array.of(0x0b), leb128(segHeader.length + n), segHeader]);
    const total = fixed.length + memory.length + dataSectionHead.length + n;
    if (total === totalBytes) {
      const out = new Uint8Array(totalBytes);
      let off = 0;
      for (const part of [...head, memory, exports, code, dataSectionHead]) {
        out.set(part, off);
        off += part.length;
      }
      // Filling in chunks keeps the peak below two copies.
      for (let p = off; p < totalBytes; p += 1 << 20)
        out.set(randomBytes(Math.min(1 << 20, totalBytes - p)), p);
      return out;
    }
    n += totalBytes - total;
  }
}

function section(id: number, body: Uint8Array): Uint8Array {
  return concat([Uint8Array.of(id), leb128(body.length), body]);
}

export function leb128(value: number): Uint8Array {
  const out: number[] = [];
  let v = value;
  do {
    let byte = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) byte |= 0x80;
    out.push(byte);
  } while (v !== 0);
  return Uint8Array.from(out);
}

export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * A valid core module of about `approxBytes` that is nearly all code: many functions of ~60 KiB
 * each (V8 caps a function body at about 7 MiB), so validation has real work to do.
 */
export function largeCodeWasm(approxBytes: number): Uint8Array<ArrayBuffer> {
  const repeats = 20_000;
  const body = new Uint8Array(2 + repeats * 3);
  body[0] = 0x00; // no locals
  for (let i = 0; i < repeats; i++) body.set([0x41, 0x00, 0x1a], 1 + i * 3); // i32.const 0; drop
  body[body.length - 1] = 0x0b;
  const entry = concat([leb128(body.length), body]);
  const n = Math.max(1, Math.floor(approxBytes / entry.length));
  const exportName = new TextEncoder().encode('proxy_abi_version_0_2_1');
  const fixed = [
    Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
    section(1, Uint8Array.of(0x01, 0x60, 0x00, 0x00)),
    section(3, concat([leb128(n), new Uint8Array(n)])),
    section(
      7,
      concat([Uint8Array.of(0x01), leb128(exportName.length), exportName, Uint8Array.of(0x00, 0x00)]),
    ),
  ];
  const codeCount = leb128(n);
  const codeHead = concat([Uint8Array.of(0x0a), leb128(codeCount.length + n * entry.length), codeCount]);
  const out = new Uint8Array(fixed.reduce((s, p) => s + p.length, 0) + codeHead.length + n * entry.length);
  let off = 0;
  for (const part of [...fixed, codeHead]) {
    out.set(part, off);
    off += part.length;
  }
  for (let i = 0; i < n; i++, off += entry.length) out.set(entry, off);
  return out;
}
