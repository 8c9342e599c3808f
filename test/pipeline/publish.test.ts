/**
 * The publisher over the real filesystem store and a real P-256 key: versions grow by one,
 * nothing is re-published without a reason, create-only versions survive races and crashes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { type ModuleRecord, storageKeys } from '../../shared/core/domain.ts';
import { loadTrustedKeys, v2Keys, verifyManifest } from '../../shared/core/manifest/index.ts';
import { createPublisher, mergeRecords, writeKeysJson } from '../../shared/core/pipeline/publish.ts';
import { readIndex, readLatestManifest, readManifest } from '../../shared/core/pipeline/state.ts';
import type { Clock, ObjectStore, Signer } from '../../shared/core/ports.ts';
import { noMetrics, silentLogger } from '../../shared/core/ports.ts';

const config = parseConfig('mirror: { name: unit-mesh, manifestTtl: 48h }');

function record(name: string, tag: string, n: number): ModuleRecord {
  const hex = n.toString(16).padStart(64, '0');
  return {
    name,
    tag,
    ociDigest: `sha256:${hex.replace(/^0/, 'f')}`,
    sha256: hex,
    size: 100 + n,
    format: 'wasm-artifact',
    kind: 'module',
    abi: 'proxy_abi_version_0_2_1',
    mirroredAt: '2026-01-10T11:59:58Z',
  };
}

describe('publisher', () => {
  let dir: string;
  let store: ObjectStore;
  let signer: Signer;
  let now: Date;
  const clock: Clock = { now: () => now };
  const publisher = () =>
    createPublisher({ config, store, signer, clock, logger: silentLogger, metrics: noMetrics });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-publish-'));
    store = await FsObjectStore.open({ root: join(dir, 'data') });
    signer = await loadOrCreateKey(join(dir, 'private'));
    now = new Date('2026-01-10T12:00:00Z');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('publishes version 1, then version + 1 per change, verifiable by an agent', async () => {
    // Prepare
    const publish = publisher();
    // Act / Assess
    expect(await publish([{ kind: 'resign', reason: 'startup' }])).toMatchObject({
      published: true,
      version: 1,
      modules: 0,
    });
    expect(
      await publish([
        { kind: 'record', record: record('r.io/b', '1', 2) },
        { kind: 'record', record: record('r.io/a', '1', 1) },
      ]),
    ).toMatchObject({
      published: true,
      version: 2,
      modules: 2,
    });
    // Act / Assess: an agent verifies what was published with keys.json.
    await writeKeysJson({ store, signer, config });
    const keys = loadTrustedKeys(
      Buffer.from((await store.getBytes(storageKeys.keys, 1 << 20))!.bytes).toString('utf8'),
    );
    const latest = (await store.getBytes(storageKeys.latestManifest, 1 << 20))!.bytes;
    const verified = verifyManifest(latest, { trustedKeys: keys, mirrorName: 'unit-mesh', now });
    expect(verified.payload.version).toBe(2);
    expect(verified.payload.modules.map((m) => m.name)).toEqual(['r.io/a', 'r.io/b']);
    expect(verified.payload.issuedAt).toBe('2026-01-10T12:00:00Z');
    expect(verified.payload.expiresAt).toBe('2026-01-12T12:00:00Z');
    const v2 = (await store.getBytes(storageKeys.manifest(2), 1 << 20))!.bytes;
    expect(Buffer.compare(v2, latest)).toBe(0);
  });

  it('does not publish when nothing changed and the manifest is fresh', async () => {
    // Prepare
    const publish = publisher();
    await publish([{ kind: 'record', record: record('r.io/a', '1', 1) }]);
    // Act / Assess
    expect(await publish([{ kind: 'record', record: record('r.io/a', '1', 1) }])).toMatchObject({
      published: false,
      version: 1,
    });
    expect(await publish([{ kind: 'resign', reason: 'schedule' }])).toMatchObject({
      published: false,
      version: 1,
    });
    expect(await store.head(storageKeys.manifest(2))).toBeUndefined();
  });

  it('re-signs on schedule once less than resignBefore is left', async () => {
    // Prepare
    const publish = publisher();
    await publish([{ kind: 'record', record: record('r.io/a', '1', 1) }]);
    now = new Date(now.getTime() + 25 * 3600_000);
    // Act
    const out = await publish([{ kind: 'resign', reason: 'schedule' }]);
    // Assess
    expect(out).toMatchObject({ published: true, version: 2, modules: 1, expiresAt: '2026-01-13T13:00:00Z' });
  });

  it('replaces the entry of a tag that moved, keeps one entry per (name, tag)', () => {
    // Prepare
    const a1 = record('r.io/a', '1', 1);
    const moved = { ...record('r.io/a', '1', 7) };
    // Act
    const { modules, changed } = mergeRecords([a1 as never], [moved, record('r.io/a', '2', 3), moved]);
    // Assess
    expect(changed).toBe(true);
    expect(modules.map((m) => [m.tag, m.sha256.slice(-1)])).toEqual([
      ['1', '7'],
      ['2', '3'],
    ]);
  });

  it('builds on a version written by another publisher instead of overwriting it', async () => {
    // Prepare
    const first = publisher();
    const second = publisher();
    await first([{ kind: 'record', record: record('r.io/a', '1', 1) }]);
    // Act: both race for version 2 with different content; exactly one writes each version.
    const [x, y] = await Promise.all([
      first([{ kind: 'record', record: record('r.io/b', '1', 2) }]),
      second([{ kind: 'record', record: record('r.io/c', '1', 3) }]),
    ]);
    // Assess
    expect(new Set([x.version, y.version])).toEqual(new Set([2, 3]));
    const latest = (await readLatestManifest(store))!;
    expect(latest.payload.version).toBe(3);
    expect(latest.payload.modules.map((m) => m.name)).toEqual(['r.io/a', 'r.io/b', 'r.io/c']);
    const v2 = (await readManifest(store, storageKeys.manifest(2)))!;
    expect(v2.payload.modules).toHaveLength(2);
  });

  it('catches the index up after a crash between the version write and the index write', async () => {
    // Prepare
    const publish = publisher();
    await publish([{ kind: 'record', record: record('r.io/a', '1', 1) }]);
    const v1 = (await store.getBytes(v2Keys.index, 1 << 20))!.bytes;
    await publish([{ kind: 'record', record: record('r.io/b', '1', 2) }]);
    // Simulate the crash: index.json still holds version 1 while index/2.json exists.
    await store.put(v2Keys.index, v1, { contentType: 'application/json' });
    // Act
    const out = await publish([{ kind: 'resign', reason: 'startup' }]);
    // Assess
    expect(out).toMatchObject({ published: true, version: 3, modules: 2 });
    expect((await readIndex(store))!.payload.version).toBe(3);
    expect((await readLatestManifest(store))!.payload.version).toBe(3);
  });

  it('continues from the highest version when latest.json is gone', async () => {
    // Prepare
    const publish = publisher();
    for (let i = 1; i <= 25; i++) await publish([{ kind: 'record', record: record(`r.io/m${i}`, '1', i) }]);
    await rm(join(dir, 'data', 'manifests', 'latest.json'));
    await rm(join(dir, 'data', 'manifests', 'v2', 'index.json'));
    // Act
    const out = await publish([{ kind: 'record', record: record('r.io/last', '1', 99) }]);
    // Assess
    expect(out).toMatchObject({ published: true, version: 26, modules: 26 });
  });
});
