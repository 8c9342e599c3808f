/** Reading a manifest envelope from a file or URL, capped, for `verify` and `wasmplugin`. */
import { open } from 'node:fs/promises';
import { parseDuration as parseCoreDuration } from '../core/duration.ts';
import { WasmMirrorError } from '../core/errors.ts';
import { DEFAULT_MAX_MANIFEST_BYTES } from '../core/manifest/index.ts';
import { discard, HttpClient, readCapped } from './http.ts';

const tooLarge = (where: string, max: number) => (n: number) =>
  new WasmMirrorError('MANIFEST_TOO_LARGE', `${where}: at least ${n} bytes, the cap is ${max}`);

/**
 * Reads `source` (a path, or an http(s) URL) whole, refusing more than `maxBytes`. A caller that
 * reads many documents from one mirror passes its `client` (and closes it), so they share its
 * connections; otherwise each URL gets a connection of its own.
 */
export async function readManifestSource(
  source: string,
  maxBytes = DEFAULT_MAX_MANIFEST_BYTES,
  shared?: HttpClient,
): Promise<Uint8Array> {
  if (/^https?:\/\//i.test(source)) {
    const client = shared ?? new HttpClient({ maxSockets: 1, idleTimeoutMs: 30_000 });
    try {
      const got = await client.get(new URL(source));
      if (got.status !== 200) {
        discard(got.res);
        throw new WasmMirrorError(
          got.status === 404 ? 'NOT_FOUND' : 'MIRROR_UNAVAILABLE',
          `${source}: HTTP ${got.status}`,
        );
      }
      return await readCapped(got.res, maxBytes, tooLarge(source, maxBytes));
    } finally {
      if (shared === undefined) client.close();
    }
  }
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(source, 'r');
  } catch (err) {
    throw new WasmMirrorError('NOT_FOUND', `cannot open ${source}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  try {
    // Read at most one byte past the cap, so a huge file is refused without loading it.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, (await fh.stat()).size + 1));
    let total = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, total, buf.length - total, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge(source, maxBytes)(total);
      if (total === buf.length) break;
    }
    return new Uint8Array(buf.subarray(0, total));
  } finally {
    await fh.close();
  }
}

/** A duration flag in the core's grammar (`30s`, `5m`, `1h30m`, `2d`, `500ms`); a bare number is seconds. */
export function parseDuration(text: string, flag: string): number {
  const ms = parseCoreDuration(text, { bareUnit: 's' });
  if (ms === undefined) {
    throw new WasmMirrorError(
      'USAGE',
      `${flag} must be a positive duration like 30s, 5m or 1h30m, got "${text}"`,
    );
  }
  return ms;
}
