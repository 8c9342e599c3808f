/**
 * Byte plumbing every reader and writer shares: a capped read (an endless or oversized body
 * costs at most the cap in memory) and a complete write (FileHandle.write may write less).
 */
import type { FileHandle } from 'node:fs/promises';
import type { WasmMirrorError } from './errors.ts';

/**
 * Collects a body of at most `maxBytes`. A declared length over the cap fails before the first
 * byte is read; otherwise the cap is checked on every chunk. `tooLarge` builds the error (it
 * gets the declared length or the count received so far).
 */
export async function readCapped(
  chunks: AsyncIterable<Uint8Array>,
  maxBytes: number,
  tooLarge: (size: number) => WasmMirrorError,
  declaredLength?: number,
): Promise<Uint8Array> {
  if (declaredLength !== undefined && declaredLength > maxBytes) throw tooLarge(declaredLength);
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of chunks) {
    size += chunk.byteLength;
    if (size > maxBytes) throw tooLarge(size);
    parts.push(chunk);
  }
  return new Uint8Array(Buffer.concat(parts, size));
}

/** Writes all of `bytes`, looping over short writes. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset);
    offset += bytesWritten;
  }
}
