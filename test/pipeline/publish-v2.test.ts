/**
 * The publisher writes manifest v2: an index verifiable as v1 was, pinning a tree of nodes; a
 * publish writes only the bins it changes and the pages above them; a v1-only data directory is
 * taken over; the v1 document is written only while `legacyManifest` is on; bursts coalesce.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { createMirrorApp } from '../../shared/core/app.ts';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';
import { type ModuleRecord, storageKeys } from '../../shared/core/domain.ts';
import {
  buildPayload,
  signManifest,
  trustedKeyFrom,
  v2Keys,
  verifyIndex,
  verifyManifest,
  walkEntries,
} from '../../shared/core/manifest/index.ts';
import type { PipelineDeps } from '../../shared/core/pipeline/context.ts';
import { createPublisher } from '../../shared/core/pipeline/publish.ts';
import { listAllEntries, readIndex, storeNodeLoader } from '../../shared/core/pipeline/state.ts';
import type { Clock, ObjectStore, PublishRequest, Signer } from '../../shared/core/ports.ts';
import { noMetrics, silentLogger } from '../../shared/core/ports.ts';

function record(i: number, tag = '1'): ModuleRecord {
  const hex = i.toString(16).padStart(64, '0');
  return {
    name: `r.io/plugin-${i}`,
    tag,
    ociDigest: `sha256:${hex.replace(/^0/, 'c')}`,
    sha256: hex,
    size: 100 + i,
    format: 'wasm-artifact',
    kind: 'module',
    mirroredAt: '2026-01-10T11:00:00Z',
  };
}
const req = (r: ModuleRecord): PublishRequest => ({ kind: 'record', record: r });

/** Counts create/put calls by key prefix. */
function counting(store: ObjectStore): { store: ObjectStore; writes: string[] } {
  const writes: string[] = [];
  const wrapped: ObjectStore = {
    head: (k) => store.head(k),
    getBytes: (k, m) => store.getBytes(k, m),
    getStream: (k, r) => store.getStream(k, r),
    list: (p) => store.list(p),
    delete: (k) => store.delete(k),
    put: (k, b, o) => {
      writes.push(k);
      return store.put(k, b, o);
    },
    create: (k, b, o) => {
      writes.push(k);
      return store.create(k, b, o);
    },
  };
  return { store: wrapped, writes };
}

describe('publisher: manifest v2', () => {
  let dir: string;
  let store: ObjectStore;
  let signer: Signer;
  let now: Date;
  const clock: Clock = { now: () => now };
  const configWith = (extra = '') => parseConfig(`mirror: { name: v2-mesh, manifestTtl: 48h${extra} }`);
  const publisherFor = (config: MirrorConfig, s: ObjectStore = store) =>
    createPublisher({ config, store: s, signer, clock, logger: silentLogger, metrics: noMetrics });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-v2-'));
    store = await FsObjectStore.open({ root: join(dir, 'data') });
    signer = await loadOrCreateKey(join(dir, 'private'));
    now = new Date('2026-01-10T12:00:00Z');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('publishes an index an agent verifies, pinning every entry', async () => {
    // Prepare
    const publish = publisherFor(configWith());

    // Act
    await publish(Array.from({ length: 40 }, (_, i) => req(record(i))));

    // Assess
    const bytes = (await store.getBytes(v2Keys.index, 1 << 16))!.bytes;
    const key = trustedKeyFrom(await signer.publicKeySpki());
    const verified = verifyIndex(bytes, { trustedKeys: [key], mirrorName: 'v2-mesh', now });
    expect(verified.payload).toMatchObject({ version: 1, entries: 40, depth: 1 });
    const names: string[] = [];
    for await (const m of walkEntries(verified.payload.root, verified.payload.depth, storeNodeLoader(store)))
      names.push(m.name);
    expect(names.sort()).toEqual(Array.from({ length: 40 }, (_, i) => `r.io/plugin-${i}`).sort());
    expect(await store.head(v2Keys.indexVersion(1))).toBeDefined();
  });

  it('a one-entry change writes one bin, the pages above it and the index, whatever the size', async () => {
    // Prepare
    await publisherFor(configWith(', legacyManifest: false'))(
      Array.from({ length: 3000 }, (_, i) => req(record(i))),
    );
    const depth = (await readIndex(store))!.payload.depth;
    const counted = counting(store);

    // Act
    await publisherFor(configWith(', legacyManifest: false'), counted.store)([req(record(5, '2'))]);

    // Assess
    const nodes = counted.writes.filter((k) => k.startsWith('manifests/v2/nodes/'));
    expect(nodes).toHaveLength(depth);
    expect(counted.writes.filter((k) => k.startsWith('manifests/v2/index'))).toHaveLength(2);
    expect(counted.writes.some((k) => k === storageKeys.latestManifest)).toBe(false);
    expect((await readIndex(store))!.payload.entries).toBe(3001);
  });

  it('grows the tree deeper as the mirror grows, keeping every entry', async () => {
    // Prepare
    const publish = publisherFor(configWith(', legacyManifest: false'));
    await publish(Array.from({ length: 200 }, (_, i) => req(record(i))));
    const before = (await readIndex(store))!.payload.depth;

    // Act
    await publish(Array.from({ length: 400 }, (_, i) => req(record(1000 + i))));

    // Assess
    const after = (await readIndex(store))!.payload;
    expect(before).toBe(1);
    expect(after.depth).toBe(2);
    expect((await listAllEntries(store)).length).toBe(600);
  });

  it('takes over a data directory that has only v1 manifests, continuing its version', async () => {
    // Prepare: what an earlier release left: manifests/7.json and latest.json.
    const legacy = await signManifest(
      buildPayload({
        mirror: 'v2-mesh',
        version: 7,
        issuedAt: now,
        ttlMs: 3600_000,
        modules: [record(1), record(2)],
      }),
      signer,
    );
    await store.create(storageKeys.manifest(7), legacy.bytes, { contentType: 'application/json' });
    await store.put(storageKeys.latestManifest, legacy.bytes, { contentType: 'application/json' });

    // Act
    const out = await publisherFor(configWith())([req(record(3))]);

    // Assess
    expect(out).toMatchObject({ published: true, version: 8, modules: 3 });
    expect((await readIndex(store))!.payload).toMatchObject({ version: 8, entries: 3 });
    expect((await listAllEntries(store)).map((m) => m.name).sort()).toEqual([
      'r.io/plugin-1',
      'r.io/plugin-2',
      'r.io/plugin-3',
    ]);
  });

  it('writes the v1 document only while legacyManifest is on', async () => {
    // Act
    await publisherFor(configWith(', legacyManifest: true'))([req(record(1))]);
    const withLegacy = await store.head(storageKeys.latestManifest);
    rmSync(join(dir, 'data', 'manifests', 'latest.json'));
    await publisherFor(configWith(', legacyManifest: false'))([req(record(2))]);

    // Assess
    expect(withLegacy).toBeDefined();
    expect(await store.head(storageKeys.latestManifest)).toBeUndefined();
  });

  it("writes the v1 copy a publish stopped before, so v1's numbered history has no gap", async () => {
    // Prepare: version 2's index was written, then the process was killed before v1's copy.
    const publish = publisherFor(configWith(', legacyManifest: true'));
    await publish([req(record(1))]);
    await publish([req(record(2))]);
    rmSync(join(dir, 'data', 'manifests', '2.json'));
    // Act: the next run has nothing new to publish.
    const outcome = await publish([]);
    // Assess
    expect(outcome).toMatchObject({ published: false, version: 2 });
    const copy = await store.getBytes(storageKeys.manifest(2), 1 << 20);
    const verified = verifyManifest(copy!.bytes, {
      trustedKeys: [trustedKeyFrom(Buffer.from(await signer.publicKeySpki()))],
      mirrorName: 'v2-mesh',
      now,
    });
    expect(verified.payload.version).toBe(2);
    expect(verified.payload.modules.map((m) => m.name).sort()).toEqual(['r.io/plugin-1', 'r.io/plugin-2']);
    expect((await store.head(storageKeys.latestManifest))?.size).toBe(copy!.bytes.length);
  });

  it('coalesces a burst: at most one version per publishInterval, a lone push at once', async () => {
    // Prepare
    const slept: number[] = [];
    const deps = {
      config: configWith(', publishInterval: 5s'),
      store,
      signer,
      clock,
      logger: silentLogger,
      metrics: noMetrics,
    } as unknown as PipelineDeps;
    const app = createMirrorApp(deps, {
      sleep: async (ms) => {
        slept.push(ms);
        now = new Date(now.getTime() + ms);
      },
    });

    // Act
    await app.publish([req(record(1))]);
    now = new Date(now.getTime() + 1000);
    await app.publish([req(record(2))]);
    now = new Date(now.getTime() + 60_000);
    await app.publish([req(record(3))]);

    // Assess: the first waits for nothing, the second waits out the interval, the third (a minute later) nothing.
    expect(slept).toEqual([4000]);
    expect((await readIndex(store))!.payload.version).toBe(3);
  });
});
