/**
 * Module inspection and validation on their own: the skeleton validation (data payloads and custom
 * sections left out) must accept and refuse exactly what the engine does on the whole module.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import { WasmInspector } from '../../shared/core/wasm/inspect.ts';
import { validateCoreModuleFile } from '../../shared/core/wasm/validate.ts';
import { buildWasm, concat, largeWasm, leb128, minimalComponent, proxyWasmModule } from '../support/index.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wm-validate-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the inspector over the bytes in small chunks, then the file validation; returns the error code if any. */
async function check(bytes: Uint8Array): Promise<string | undefined> {
  const path = join(dir, 'm.wasm');
  writeFileSync(path, bytes);
  try {
    const inspector = new WasmInspector();
    for (let i = 0; i < bytes.length; i += 7) inspector.push(bytes.subarray(i, i + 7));
    if (inspector.end() === 'module') await validateCoreModuleFile(path, inspector.sections);
    return undefined;
  } catch (err) {
    return isWasmMirrorError(err) ? err.code : String(err);
  }
}

const customSection = (name: string, payload: Uint8Array) => {
  const n = new TextEncoder().encode(name);
  const body = concat([leb128(n.length), n, payload]);
  return concat([Uint8Array.of(0x00), leb128(body.length), body]);
};

describe('skeleton validation agrees with the engine', () => {
  const valid: [string, string][] = [
    ['active data', '(module (memory 1) (data (i32.const 8) "hello") (data (i32.const 100) "world"))'],
    [
      'passive data with memory.init (data count section)',
      '(module (memory 1) (data "abc") (func (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 3)) (data.drop 0)))',
    ],
    [
      'offset from an imported global',
      '(module (import "e" "g" (global i32)) (memory 1) (data (global.get 0) "x"))',
    ],
    ['explicit memory index', '(module (memory $m 1) (data (memory $m) (i32.const 0) "y"))'],
    ['no data at all', '(module (func (export "f") (result i32) (i32.const 1)))'],
  ];
  it.each(valid)('accepts %s', async (_name, wat) => {
    // Prepare
    const bytes = buildWasm(wat);
    // Act / Assess
    expect(WebAssembly.validate(bytes)).toBe(true);
    expect(await check(bytes)).toBeUndefined();
  });

  it('accepts a large data-heavy module and a module with custom sections', async () => {
    // Act / Assess
    expect(await check(largeWasm(3 * 1024 * 1024 + 17))).toBeUndefined();
    const m = proxyWasmModule();
    expect(await check(concat([m, customSection('producers', new Uint8Array(1000))]))).toBeUndefined();
  });

  it('refuses an active data segment without a memory', async () => {
    // Prepare: wat2wasm refuses this, so the bytes are spelled out (a memory-less module with one data segment).
    const bytes = concat([
      Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
      Uint8Array.of(0x0b, 0x07, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x01, 0x61),
    ]);
    // Act / Assess
    expect(WebAssembly.validate(bytes)).toBe(false);
    expect(await check(bytes)).toBe('INVALID_WASM');
  });

  it('refuses invalid code even when most of the module is data', async () => {
    // Prepare
    const big = largeWasm(1024 * 1024);
    // Replace the code section's body (one function, `end` only) with one that leaves an i32 behind.
    const code = Uint8Array.of(0x0a, 0x06, 0x01, 0x04, 0x00, 0x41, 0x00, 0x0b);
    const at = Buffer.from(big).indexOf(Buffer.from([0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b]));
    expect(at).toBeGreaterThan(0);
    const bad = concat([big.subarray(0, at), code, big.subarray(at + 6)]);
    // Act / Assess
    expect(WebAssembly.validate(bad)).toBe(false);
    expect(await check(bad)).toBe('INVALID_WASM');
  });

  it('refuses a data segment longer than its section', async () => {
    // Prepare
    const bytes = concat([
      Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00),
      Uint8Array.of(0x05, 0x03, 0x01, 0x00, 0x01),
      Uint8Array.of(0x0b, 0x07, 0x01, 0x00, 0x41, 0x00, 0x0b, 0x05, 0x61),
    ]);
    // Act / Assess
    expect(await check(bytes)).toBe('INVALID_WASM');
  });

  it('refuses duplicate sections', async () => {
    // Prepare
    const type = Uint8Array.of(0x01, 0x04, 0x01, 0x60, 0x00, 0x00);
    // Act / Assess
    expect(
      await check(concat([Uint8Array.of(0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00), type, type])),
    ).toBe('INVALID_WASM');
  });
});

describe('inspector', () => {
  it('reports kind and the proxy-wasm ABI export', () => {
    // Prepare
    const inspector = new WasmInspector();
    // Act
    inspector.push(proxyWasmModule({ abi: 'proxy_abi_version_0_1_0' }));
    // Assess
    expect(inspector.end()).toBe('module');
    expect(inspector.proxyAbi).toBe('proxy_abi_version_0_1_0');
    expect(inspector.exports).toContain('proxy_on_vm_start');
  });

  it('has no ABI for a plain module, and recognises components', () => {
    // Act / Assess: a plain module.
    const plain = new WasmInspector();
    plain.push(buildWasm('(module (func (export "run")))'));
    plain.end();
    expect(plain.proxyAbi).toBeUndefined();
    // Act / Assess: a component.
    const component = new WasmInspector();
    component.push(minimalComponent());
    expect(component.end()).toBe('component');
  });

  it('fails fast on the magic, before the rest arrives', () => {
    // Prepare
    const inspector = new WasmInspector();
    let code: string | undefined;
    // Act
    try {
      inspector.push(new TextEncoder().encode('PK\x03\x04'));
    } catch (err) {
      code = isWasmMirrorError(err) ? err.code : undefined;
    }
    // Assess
    expect(code).toBe('NOT_WASM');
  });
});
