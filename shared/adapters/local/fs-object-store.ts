/**
 * ObjectStore over a data directory laid out exactly as the published storage layout: the key is
 * the path relative to the root, so the directory can be served, copied or synced as it is.
 *
 * - Writes go to a temp file in the target directory, are fsynced, then renamed (put) or hard
 *   linked (create) into place, and the directory is fsynced. Readers see the old object or the
 *   new one, never a part, and a crash leaves at most a temp file that the next open sweeps.
 * - `create` uses link(2), which fails with EEXIST atomically, so it stays create-only between
 *   processes sharing the directory (the server and a `wasm-mirror mirror` run).
 * - ETag: `"<32 hex>"`, a hash of (device, inode, size, mtime in ns). Every write makes a new
 *   inode, so the validator changes with the bytes; it is stable across restarts. It is not a
 *   content hash: two copies of the same bytes have different ETags, which HTTP allows.
 * - The filesystem keeps no content type; it is derived from the key's extension.
 */
import { createHash, type Hash } from 'node:crypto';
import { type BigIntStats, createReadStream, type Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { link, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { validateObjectKey } from '../../core/domain.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import type {
  ByteRange,
  ObjectBody,
  ObjectInfo,
  ObjectStore,
  ObjectStream,
  PutOptions,
} from '../../core/ports.ts';
import { ensureDir, errnoCode, fsyncDir, TEMP_PREFIX, tempName, writeAll } from '../../platform/files.ts';

export interface FsObjectStoreOptions {
  /** Data directory; created when missing. */
  root: string;
  /**
   * Temp files older than this are removed when the store opens (left by a crash). Active
   * writers touch their temp file on every chunk, so only abandoned ones get this old.
   * @default 15 minutes
   */
  staleTempMs?: number;
  /**
   * Sweep stale temp files when the store opens; off where the caller sweeps the whole data
   * directory itself (the embedded server's leftover sweep), so it is walked once, not twice.
   * @default true
   */
  sweepTempsOnOpen?: boolean;
}

const CONTENT_TYPES: Record<string, string> = {
  wasm: 'application/wasm',
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
};

const COPY_CHUNK = 1024 * 1024;

/** The shared key rules, plus: no segment may look like this store's temp files. */
export function validateKey(key: string): void {
  validateObjectKey(key);
  for (const segment of key.split('/')) {
    if (segment.startsWith(TEMP_PREFIX)) {
      throw new WasmMirrorError(
        'INVALID_KEY',
        `invalid object key ${JSON.stringify(key)}: reserved temp-file name`,
      );
    }
  }
}

function validatePrefix(prefix: string): void {
  if (prefix === '') return;
  if (prefix.includes('\0') || prefix.includes('\\') || prefix.startsWith('/')) {
    throw new WasmMirrorError('INVALID_KEY', `invalid key prefix ${JSON.stringify(prefix)}`);
  }
  // The complete directory segments of a prefix must be valid key segments.
  const segments = prefix.split('/').slice(0, -1);
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new WasmMirrorError('INVALID_KEY', `invalid key prefix ${JSON.stringify(prefix)}`);
    }
  }
}

export function contentTypeForKey(key: string): string {
  const dot = key.lastIndexOf('.');
  const ext = dot >= 0 ? key.slice(dot + 1).toLowerCase() : '';
  return CONTENT_TYPES[ext] ?? 'application/octet-stream';
}

function etagOf(st: BigIntStats): string {
  const h = createHash('sha256').update(`${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}`).digest('hex');
  return `"${h.slice(0, 32)}"`;
}

function storageError(action: string, key: string, err: unknown): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WasmMirrorError('STORAGE_FAILURE', `${action} ${key}: ${message}`, {
    cause: err,
    retryable: true,
  });
}

export class FsObjectStore implements ObjectStore {
  readonly root: string;
  private readonly staleTempMs: number;
  private readonly sweepTempsOnOpen: boolean;
  private initialized: Promise<void> | undefined;

  constructor(options: FsObjectStoreOptions) {
    this.root = options.root;
    this.staleTempMs = options.staleTempMs ?? 15 * 60_000;
    this.sweepTempsOnOpen = options.sweepTempsOnOpen ?? true;
  }

  /** Creates the data directory and sweeps stale temp files; the other methods call it on first use. */
  static async open(options: FsObjectStoreOptions): Promise<FsObjectStore> {
    const store = new FsObjectStore(options);
    await store.init();
    return store;
  }

  init(): Promise<void> {
    this.initialized ??= (async () => {
      await ensureDir(this.root);
      if (this.sweepTempsOnOpen) await this.sweepTemps(this.root, Date.now() - this.staleTempMs);
    })().catch((err) => {
      // Not remembered: a disk that was full or not yet mounted may be fine on the next call.
      this.initialized = undefined;
      throw storageError('open', this.root, err);
    });
    return this.initialized;
  }

  /** Absolute file path of a key (validated), e.g. for sendfile-style serving. */
  pathOf(key: string): string {
    validateKey(key);
    return join(this.root, ...key.split('/'));
  }

  async delete(key: string): Promise<void> {
    const path = this.pathOf(key);
    await this.init();
    try {
      await unlink(path);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw storageError('delete', key, err);
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    const path = this.pathOf(key);
    await this.init();
    try {
      const st = await stat(path, { bigint: true });
      return st.isFile() ? this.infoOf(key, st) : undefined;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return undefined;
      throw storageError('head', key, err);
    }
  }

  async getBytes(
    key: string,
    maxBytes: number,
  ): Promise<{ info: ObjectInfo; bytes: Uint8Array } | undefined> {
    const opened = await this.openFile(key);
    if (opened === undefined) return undefined;
    const { handle, info } = opened;
    try {
      if (info.size > maxBytes) {
        throw new WasmMirrorError('SIZE_EXCEEDED', `${key} is ${info.size} bytes, more than ${maxBytes}`);
      }
      const bytes = new Uint8Array(info.size);
      let offset = 0;
      while (offset < info.size) {
        const { bytesRead } = await handle.read(bytes, offset, info.size - offset, offset);
        if (bytesRead === 0) break;
        offset += bytesRead;
      }
      if (offset !== info.size) {
        throw new WasmMirrorError('STORAGE_FAILURE', `${key} shrank while reading`, { retryable: true });
      }
      return { info, bytes };
    } catch (err) {
      throw storageError('read', key, err);
    } finally {
      await handle.close().catch(() => {});
    }
  }

  async getStream(key: string, range?: ByteRange): Promise<ObjectStream | undefined> {
    const opened = await this.openFile(key);
    if (opened === undefined) return undefined;
    const { handle, info } = opened;
    let start = 0;
    let end = info.size - 1;
    if (range !== undefined) {
      const last = range.end === undefined ? info.size - 1 : Math.min(range.end, info.size - 1);
      if (
        !Number.isSafeInteger(range.start) ||
        range.start < 0 ||
        (range.end !== undefined && (!Number.isSafeInteger(range.end) || range.end < range.start)) ||
        range.start >= info.size
      ) {
        await handle.close().catch(() => {});
        throw new WasmMirrorError(
          'RANGE_NOT_SATISFIABLE',
          `range ${range.start}-${range.end ?? ''} not satisfiable for ${key} of ${info.size} bytes`,
          { details: { size: info.size } },
        );
      }
      start = range.start;
      end = last;
    }
    if (end < start) {
      // Empty object, no range: nothing to read.
      await handle.close().catch(() => {});
      return { info, body: emptyBody() };
    }
    // The stream reads from the already-open descriptor, so a concurrent replace cannot mix objects.
    const body = handle.createReadStream({ start, end, highWaterMark: 256 * 1024, autoClose: true });
    return { info, body };
  }

  put(key: string, body: ObjectBody, options: PutOptions): Promise<ObjectInfo> {
    return this.write(key, body, options, false);
  }

  create(key: string, body: ObjectBody, options: PutOptions): Promise<ObjectInfo> {
    return this.write(key, body, options, true);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    await this.init();
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash) : '';
    const keys: string[] = [];
    await this.collectKeys(dirKey, prefix, keys);
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const key of keys) {
      const info = await this.head(key);
      if (info !== undefined) yield info;
    }
  }

  // -------------------------------------------------------------------------------------------

  private async collectKeys(dirKey: string, prefix: string, out: string[]): Promise<void> {
    const dir = dirKey === '' ? this.root : join(this.root, ...dirKey.split('/'));
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR') return;
      throw storageError('list', prefix, err);
    }
    for (const entry of entries) {
      if (entry.name.startsWith(TEMP_PREFIX)) continue;
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`;
      if (entry.isDirectory()) {
        // Descend only where keys under this directory can still match the prefix.
        const asDir = `${key}/`;
        if (asDir.startsWith(prefix) || prefix.startsWith(asDir)) await this.collectKeys(key, prefix, out);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        out.push(key);
      }
    }
  }

  private infoOf(key: string, st: BigIntStats): ObjectInfo {
    return {
      key,
      size: Number(st.size),
      etag: etagOf(st),
      contentType: contentTypeForKey(key),
      lastModified: st.mtime,
    };
  }

  private async openFile(key: string): Promise<{ handle: FileHandle; info: ObjectInfo } | undefined> {
    const path = this.pathOf(key);
    await this.init();
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'ENOTDIR' || errnoCode(err) === 'EISDIR') {
        return undefined;
      }
      throw storageError('open', key, err);
    }
    try {
      const st = await handle.stat({ bigint: true });
      if (!st.isFile()) {
        await handle.close().catch(() => {});
        return undefined;
      }
      return { handle, info: this.infoOf(key, st) };
    } catch (err) {
      await handle.close().catch(() => {});
      throw storageError('stat', key, err);
    }
  }

  private async write(
    key: string,
    body: ObjectBody,
    options: PutOptions,
    createOnly: boolean,
  ): Promise<ObjectInfo> {
    const finalPath = this.pathOf(key);
    await this.init();
    if (options.sha256 !== undefined && !/^[a-f0-9]{64}$/.test(options.sha256)) {
      throw new WasmMirrorError(
        'DIGEST_MISMATCH',
        `expected sha256 for ${key} is not 64 lowercase hex digits`,
      );
    }
    // Cheap early refusal; the link below is what actually guarantees create-only.
    if (createOnly && (await this.head(key)) !== undefined) throw alreadyExists(key);

    const dir = dirname(finalPath);
    const tempPath = join(dir, tempName());
    let tempExists = false;
    try {
      await ensureDir(dir);
      const handle = await open(tempPath, 'wx', 0o644);
      tempExists = true;
      let st: BigIntStats;
      try {
        const hash = options.sha256 === undefined ? undefined : createHash('sha256');
        const written = await copyBody(handle, body, hash);
        if (!(body instanceof Uint8Array) && written !== body.size) {
          throw new WasmMirrorError(
            'LENGTH_MISMATCH',
            `staged file for ${key} has ${written} bytes, expected ${body.size}`,
          );
        }
        if (hash !== undefined) {
          const actual = hash.digest('hex');
          if (actual !== options.sha256) {
            throw new WasmMirrorError(
              'DIGEST_MISMATCH',
              `sha256 of ${key} is ${actual}, expected ${options.sha256}`,
              {
                details: { expected: options.sha256, actual },
              },
            );
          }
        }
        await handle.sync();
        st = await handle.stat({ bigint: true });
      } finally {
        await handle.close();
      }

      if (createOnly) {
        try {
          await link(tempPath, finalPath);
        } catch (err) {
          if (errnoCode(err) === 'EEXIST') throw alreadyExists(key);
          throw err;
        }
        await unlink(tempPath);
        tempExists = false;
      } else {
        await rename(tempPath, finalPath);
        tempExists = false;
      }
      await fsyncDir(dir);
      return this.infoOf(key, st);
    } catch (err) {
      if (tempExists) await unlink(tempPath).catch(() => {});
      throw storageError(createOnly ? 'create' : 'put', key, err);
    }
  }

  private async sweepTemps(dir: string, olderThanMs: number): Promise<void> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) {
        await this.sweepTemps(path, olderThanMs);
      } else if (entry.name.startsWith(TEMP_PREFIX)) {
        try {
          const st = await stat(path);
          if (st.mtimeMs < olderThanMs) await unlink(path);
        } catch {
          // Gone already, or another process is sweeping too.
        }
      }
    }
  }
}

function alreadyExists(key: string): WasmMirrorError {
  return new WasmMirrorError('ALREADY_EXISTS', `${key} already exists`);
}

async function* emptyBody(): AsyncIterable<Uint8Array> {}

async function copyBody(handle: FileHandle, body: ObjectBody, hash: Hash | undefined): Promise<number> {
  if (body instanceof Uint8Array) {
    hash?.update(body);
    await writeAll(handle, body);
    return body.byteLength;
  }
  let written = 0;
  for await (const chunk of createReadStream(body.path, { highWaterMark: COPY_CHUNK })) {
    const bytes = chunk as Buffer;
    // Stop early on an oversized staged file instead of copying all of it.
    if (written + bytes.byteLength > body.size) return written + bytes.byteLength;
    hash?.update(bytes);
    await writeAll(handle, bytes);
    written += bytes.byteLength;
  }
  return written;
}
