/**
 * The ObjectStore contract. Every adapter (filesystem, S3 against an emulator) runs this suite, so
 * the pipeline can rely on the same behaviour in both runtimes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import type { ObjectInfo, ObjectStore } from '../../shared/core/ports.ts';

export interface ObjectStoreUnderTest {
  store: ObjectStore;
  cleanup(): Promise<void>;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const text = (s: string) => new TextEncoder().encode(s);
const JSON_TYPE = { contentType: 'application/json' };

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

async function listAll(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix)) out.push(info);
  return out;
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, `expected ${code}`).toBeDefined();
  expect(isWasmMirrorError(err) ? err.code : err).toBe(code);
}

export function describeObjectStoreContract(
  name: string,
  makeStore: () => Promise<ObjectStoreUnderTest>,
): void {
  describe(`ObjectStore contract: ${name}`, () => {
    let subject: ObjectStoreUnderTest;
    let store: ObjectStore;
    let scratch: string;

    beforeAll(async () => {
      scratch = await mkdtemp(join(tmpdir(), 'wm-contract-'));
    });
    afterAll(async () => {
      await rm(scratch, { recursive: true, force: true });
    });
    beforeEach(async () => {
      subject = await makeStore();
      store = subject.store;
    });
    afterEach(async () => {
      await subject.cleanup();
    });

    it('puts, heads and gets an object', async () => {
      const bytes = text('{"hello":"world"}');
      const info = await store.put('manifests/1.json', bytes, JSON_TYPE);
      expect(info.key).toBe('manifests/1.json');
      expect(info.size).toBe(bytes.byteLength);
      expect(info.etag).toMatch(/^"[^"]+"$/);

      const head = await store.head('manifests/1.json');
      expect(head?.size).toBe(bytes.byteLength);
      expect(head?.etag).toBe(info.etag);

      const got = await store.getBytes('manifests/1.json', 1024);
      expect(Buffer.from(got!.bytes).toString()).toBe('{"hello":"world"}');
      expect(got?.info.etag).toBe(info.etag);

      const stream = await store.getStream('manifests/1.json');
      expect((await collect(stream!.body)).toString()).toBe('{"hello":"world"}');
    });

    it('deletes an object; deleting a missing one is not an error', async () => {
      // Prepare
      await store.put('modules/sha256/gone.wasm', text('x'), JSON_TYPE);

      // Act
      await store.delete('modules/sha256/gone.wasm');
      await store.delete('modules/sha256/gone.wasm');

      // Assess
      expect(await store.head('modules/sha256/gone.wasm')).toBeUndefined();
      await expect(store.delete('../escape')).rejects.toMatchObject({ code: 'INVALID_KEY' });
    });

    it('answers undefined for a missing key', async () => {
      expect(await store.head('manifests/404.json')).toBeUndefined();
      expect(await store.getBytes('manifests/404.json', 10)).toBeUndefined();
      expect(await store.getStream('manifests/404.json')).toBeUndefined();
      expect(await store.getStream('manifests/404.json', { start: 0 })).toBeUndefined();
    });

    it('refuses getBytes over the cap with SIZE_EXCEEDED', async () => {
      await store.put('keys.json', text('0123456789'), JSON_TYPE);
      await expectCode(store.getBytes('keys.json', 9), 'SIZE_EXCEEDED');
      expect((await store.getBytes('keys.json', 10))?.bytes.byteLength).toBe(10);
    });

    it('changes the ETag when put replaces the bytes', async () => {
      const first = await store.put('manifests/latest.json', text('{"v":1}'), JSON_TYPE);
      const second = await store.put('manifests/latest.json', text('{"v":2}'), JSON_TYPE);
      expect(second.etag).not.toBe(first.etag);
      expect((await store.head('manifests/latest.json'))?.etag).toBe(second.etag);
      const got = await store.getBytes('manifests/latest.json', 100);
      expect(Buffer.from(got!.bytes).toString()).toBe('{"v":2}');
    });

    it('create is create-only: ALREADY_EXISTS and the first object kept', async () => {
      await store.create('manifests/7.json', text('first'), JSON_TYPE);
      await expectCode(store.create('manifests/7.json', text('second'), JSON_TYPE), 'ALREADY_EXISTS');
      const got = await store.getBytes('manifests/7.json', 100);
      expect(Buffer.from(got!.bytes).toString()).toBe('first');
    });

    it('concurrent creates of one key: exactly one wins', async () => {
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.create('manifests/9.json', text(`writer ${i}`), JSON_TYPE)),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      expect(won).toHaveLength(1);
      for (const r of lost) expect(isWasmMirrorError(r.reason, 'ALREADY_EXISTS')).toBe(true);
      const got = await store.getBytes('manifests/9.json', 100);
      expect(Buffer.from(got!.bytes).toString()).toMatch(/^writer \d$/);
    });

    it('verifies sha256 while writing; a mismatch stores nothing', async () => {
      const bytes = text('\0asm module bytes');
      const good = sha256(bytes);
      const key = `modules/sha256/${good}.wasm`;
      const wrong = sha256(text('other'));
      await expectCode(
        store.create(key, bytes, { contentType: 'application/wasm', sha256: wrong }),
        'DIGEST_MISMATCH',
      );
      await expectCode(
        store.put(key, bytes, { contentType: 'application/wasm', sha256: wrong }),
        'DIGEST_MISMATCH',
      );
      expect(await store.head(key)).toBeUndefined();
      expect(await listAll(store, 'modules/')).toEqual([]);

      const info = await store.create(key, bytes, { contentType: 'application/wasm', sha256: good });
      expect(info.size).toBe(bytes.byteLength);
      expect(sha256((await store.getBytes(key, 1000))!.bytes)).toBe(good);
    });

    it('serves inclusive byte ranges and refuses unsatisfiable ones', async () => {
      await store.put('keys.json', text('0123456789'), JSON_TYPE);
      const read = async (start: number, end?: number) => {
        const s = await store.getStream('keys.json', end === undefined ? { start } : { start, end });
        expect(s?.info.size).toBe(10);
        return (await collect(s!.body)).toString();
      };
      expect(await read(0, 0)).toBe('0');
      expect(await read(2, 5)).toBe('2345');
      expect(await read(7)).toBe('789');
      expect(await read(9, 9)).toBe('9');
      expect(await read(8, 100)).toBe('89');
      await expectCode(store.getStream('keys.json', { start: 10 }), 'RANGE_NOT_SATISFIABLE');
      await expectCode(store.getStream('keys.json', { start: 5, end: 4 }), 'RANGE_NOT_SATISFIABLE');
    });

    it('stores a staged file body, checking its size and sha256', async () => {
      const bytes = randomBytes(300_000);
      const path = join(scratch, `staged-${Date.now()}.wasm`);
      await writeFile(path, bytes);
      const hex = sha256(bytes);
      const key = `modules/sha256/${hex}.wasm`;
      const info = await store.create(
        key,
        { path, size: bytes.byteLength },
        { contentType: 'application/wasm', sha256: hex },
      );
      expect(info.size).toBe(bytes.byteLength);
      expect(sha256((await store.getBytes(key, bytes.byteLength))!.bytes)).toBe(hex);

      const short = join(scratch, `short-${Date.now()}.wasm`);
      await writeFile(short, bytes.subarray(0, 1000));
      await expectCode(
        store.put(
          'modules/sha256/short.wasm',
          { path: short, size: 2000 },
          { contentType: 'application/wasm' },
        ),
        'LENGTH_MISMATCH',
      );
      expect(await store.head('modules/sha256/short.wasm')).toBeUndefined();
    });

    it('streams a 20 MiB object in chunks, bytes intact', async () => {
      const size = 20 * 1024 * 1024;
      const bytes = randomBytes(size);
      const path = join(scratch, `big-${Date.now()}.wasm`);
      await writeFile(path, bytes);
      const hex = sha256(bytes);
      const key = `modules/sha256/${hex}.wasm`;
      await store.put(key, { path, size }, { contentType: 'application/wasm', sha256: hex });
      const stream = await store.getStream(key);
      expect(stream?.info.size).toBe(size);
      const hash = createHash('sha256');
      let chunks = 0;
      let largest = 0;
      for await (const chunk of stream!.body) {
        hash.update(chunk);
        chunks++;
        largest = Math.max(largest, chunk.byteLength);
      }
      expect(hash.digest('hex')).toBe(hex);
      expect(chunks).toBeGreaterThan(1);
      expect(largest).toBeLessThan(size);

      const tail = await store.getStream(key, { start: size - 5 });
      expect(Buffer.compare(await collect(tail!.body), bytes.subarray(size - 5))).toBe(0);
    });

    it('lists keys under a prefix in lexicographic order', async () => {
      for (const v of [10, 2, 1]) await store.create(`manifests/${v}.json`, text(`${v}`), JSON_TYPE);
      await store.put('manifests/latest.json', text('x'), JSON_TYPE);
      await store.put('keys.json', text('{}'), JSON_TYPE);
      const hex = sha256(text('m'));
      await store.put(`modules/sha256/${hex}.wasm`, text('m'), { contentType: 'application/wasm' });

      expect((await listAll(store, 'manifests/')).map((i) => i.key)).toEqual([
        'manifests/1.json',
        'manifests/10.json',
        'manifests/2.json',
        'manifests/latest.json',
      ]);
      expect((await listAll(store, 'manifests/1')).map((i) => i.key)).toEqual([
        'manifests/1.json',
        'manifests/10.json',
      ]);
      expect((await listAll(store, 'modules/')).map((i) => i.key)).toEqual([`modules/sha256/${hex}.wasm`]);
      expect(await listAll(store, 'nothing/')).toEqual([]);
      const one = (await listAll(store, 'manifests/2'))[0];
      expect(one?.size).toBe(1);
      expect(one?.etag).toBe((await store.head('manifests/2.json'))?.etag);
    });

    it('concurrent readers never see a partial object while it is replaced', async () => {
      const size = 2 * 1024 * 1024;
      const versions = Array.from({ length: 6 }, (_, i) => Buffer.alloc(size, 65 + i));
      const digests = new Set(versions.map((v) => sha256(v)));
      await store.put('manifests/latest.json', versions[0]!, JSON_TYPE);
      let writing = true;
      const writer = (async () => {
        for (let round = 0; round < 3; round++) {
          for (const v of versions) await store.put('manifests/latest.json', v, JSON_TYPE);
        }
        writing = false;
      })();
      let reads = 0;
      const reader = async () => {
        while (writing) {
          const got = await store.getBytes('manifests/latest.json', size);
          expect(got?.bytes.byteLength).toBe(size);
          expect(digests.has(sha256(got!.bytes))).toBe(true);
          const s = await store.getStream('manifests/latest.json');
          expect(digests.has(sha256(await collect(s!.body)))).toBe(true);
          reads++;
        }
      };
      await Promise.all([writer, reader(), reader()]);
      expect(reads).toBeGreaterThan(0);
    });

    it('rejects unsafe keys with INVALID_KEY', async () => {
      const bad = [
        '',
        '/etc/passwd',
        '../outside.json',
        'manifests/../../x.json',
        'manifests/./1.json',
        'manifests//1.json',
        'manifests/',
        'manifests\\1.json',
        'manifests/1.json\0',
      ];
      for (const key of bad) {
        await expectCode(store.put(key, text('x'), JSON_TYPE), 'INVALID_KEY');
        await expectCode(store.create(key, text('x'), JSON_TYPE), 'INVALID_KEY');
        await expectCode(store.head(key), 'INVALID_KEY');
        await expectCode(store.getBytes(key, 10), 'INVALID_KEY');
        await expectCode(store.getStream(key), 'INVALID_KEY');
      }
    });
  });
}
