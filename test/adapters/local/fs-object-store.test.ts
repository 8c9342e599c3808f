import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore, validateKey } from '../../../shared/adapters/local/fs-object-store.ts';
import { isWasmMirrorError } from '../../../shared/core/errors.ts';
import type { ObjectStore } from '../../../shared/core/ports.ts';
import { TEMP_PREFIX } from '../../../shared/platform/files.ts';
import { describeObjectStoreContract } from '../../contract/object-store.contract.ts';

describeObjectStoreContract('FsObjectStore', async () => {
  const root = await mkdtemp(join(tmpdir(), 'wm-fs-store-'));
  return {
    store: await FsObjectStore.open({ root }),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

// Compile-time check that the adapter keeps to the port.
new FsObjectStore({ root: '/nonexistent' }) satisfies ObjectStore;

describe('FsObjectStore on disk', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'wm-fs-store-'));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lays objects out as the storage layout says: key = path under the data directory', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root });
    // Act
    await store.put('manifests/latest.json', new TextEncoder().encode('{}'), {
      contentType: 'application/json',
    });
    await store.put('keys.json', new TextEncoder().encode('[]'), { contentType: 'application/json' });
    // Assess
    expect((await readdir(join(root, 'manifests'))).sort()).toEqual(['latest.json']);
    expect((await stat(join(root, 'keys.json'))).size).toBe(2);
    expect(store.pathOf('manifests/latest.json')).toBe(join(root, 'manifests', 'latest.json'));
  });

  it('leaves no temp files behind after writes and failed writes', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root });
    const bytes = randomBytes(1000);
    await store.put('manifests/1.json', bytes, { contentType: 'application/json' });
    // Act / Assess: both writes must really fail, or the directory listing below proves nothing
    // about failed writes.
    await expect(
      store.create('manifests/1.json', bytes, { contentType: 'application/json' }),
    ).rejects.toMatchObject({ code: 'ALREADY_EXISTS' });
    await expect(
      store.put('manifests/2.json', bytes, { contentType: 'application/json', sha256: '0'.repeat(64) }),
    ).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    // Assess
    expect(await readdir(join(root, 'manifests'))).toEqual(['1.json']);
    expect(Buffer.from((await store.getBytes('manifests/1.json', 2000))!.bytes).equals(bytes)).toBe(true);
  });

  it('sweeps stale temp files on open, keeps fresh ones (a writer in another process)', async () => {
    // Prepare
    await mkdir(join(root, 'modules', 'sha256'), { recursive: true });
    const stale = join(root, 'modules', 'sha256', `${TEMP_PREFIX}dead`);
    const fresh = join(root, 'modules', 'sha256', `${TEMP_PREFIX}live`);
    await writeFile(stale, 'partial');
    await writeFile(fresh, 'partial');
    const old = new Date(Date.now() - 60 * 60_000);
    await utimes(stale, old, old);
    // Act
    const store = await FsObjectStore.open({ root, staleTempMs: 10 * 60_000 });
    // Assess
    expect((await readdir(join(root, 'modules', 'sha256'))).sort()).toEqual([`${TEMP_PREFIX}live`]);
    // Temp files are never listed as objects.
    const listed: string[] = [];
    for await (const info of store.list('')) listed.push(info.key);
    expect(listed).toEqual([]);
  });

  it('keeps the ETag stable across reopen and derives the content type from the extension', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root });
    // Act
    const info = await store.put('modules/sha256/ab.wasm', new Uint8Array([0, 97, 115, 109]), {
      contentType: 'application/wasm',
    });
    const again = await new FsObjectStore({ root }).head('modules/sha256/ab.wasm');
    // Assess
    expect(again?.etag).toBe(info.etag);
    expect(again?.contentType).toBe('application/wasm');
    expect(info.lastModified).toBeInstanceOf(Date);
  });

  it('create refuses early when the key exists, before copying a large body', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root });
    await store.create('keys.json', new Uint8Array([1]), { contentType: 'application/json' });
    // Act
    const err = await store
      .create(
        'keys.json',
        { path: join(root, 'does-not-exist'), size: 10 },
        { contentType: 'application/json' },
      )
      .catch((e: unknown) => e);
    // Assess
    expect(isWasmMirrorError(err, 'ALREADY_EXISTS')).toBe(true);
  });

  it('a missing staged file is a STORAGE_FAILURE, not a crash', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root });
    // Act
    const err = await store
      .put('keys.json', { path: join(root, 'missing'), size: 10 }, { contentType: 'application/json' })
      .catch((e: unknown) => e);
    // Assess
    expect(isWasmMirrorError(err, 'STORAGE_FAILURE')).toBe(true);
  });

  it('validates keys without touching the disk', () => {
    // Act / Assess
    expect(() => validateKey('modules/sha256/abc.wasm')).not.toThrow();
    expect(() => validateKey(`modules/${TEMP_PREFIX}x`)).toThrow(/reserved/);
    expect(() => validateKey('a'.repeat(1025))).toThrow(/longer/);
  });
});
