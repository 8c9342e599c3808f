/**
 * Retention and garbage collection: tags leave the manifest by count and age (pinned tags stay),
 * per source with per-repository overrides; their bytes leave storage only after every manifest
 * that listed them has expired.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { createMirrorApp } from '../../shared/core/app.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { type ModuleRecord, storageKeys } from '../../shared/core/domain.ts';
import type { PipelineDeps } from '../../shared/core/pipeline/context.ts';
import { applyRetention, retentionFor } from '../../shared/core/pipeline/retention.ts';
import { listAllEntries } from '../../shared/core/pipeline/state.ts';
import type { Clock, ObjectStore, PublishRequest, Signer } from '../../shared/core/ports.ts';
import { noMetrics, silentLogger } from '../../shared/core/ports.ts';

const HOUR = 3600_000;

function entry(name: string, tag: string, at: string, n: number): ModuleRecord {
  const hex = n.toString(16).padStart(64, '0');
  return {
    name,
    tag,
    ociDigest: `sha256:${hex.replace(/^0/, 'b')}`,
    sha256: hex,
    size: 10 + n,
    format: 'wasm-artifact',
    kind: 'module',
    mirroredAt: at,
    observedAt: at,
  };
}

const config = parseConfig(`
mirror: { name: keep-mesh, manifestTtl: 2h, gcGrace: 1h, publishInterval: 0, legacyManifest: false,
          retention: { keepTags: 3 } }
sources:
  - id: ci
    type: distribution
    registry: r.io
    repositories: ["plugins/**"]
    webhookSecretEnv: S
    retention:
      maxAge: 30d
      pin: ["v*", "stable"]
      overrides:
        - { repositories: ["plugins/nightly/**"], keepTags: 2 }
`);

describe('retention policy', () => {
  it('resolves the override, then the source, then the mirror default', () => {
    // Act
    const nightly = retentionFor(config, 'r.io/plugins/nightly/app');
    const plain = retentionFor(config, 'r.io/plugins/app');
    const elsewhere = retentionFor(config, 'other.io/app');

    // Assess
    expect(nightly).toEqual({ keepTags: 2, maxAgeMs: 30 * 24 * HOUR, pin: ['v*', 'stable'] });
    expect(plain).toEqual({ keepTags: 3, maxAgeMs: 30 * 24 * HOUR, pin: ['v*', 'stable'] });
    expect(elsewhere).toEqual({ keepTags: 3 });
  });

  it('keeps the newest N, drops the too old, never drops a pinned tag', () => {
    // Prepare
    const now = new Date('2026-03-01T00:00:00Z');
    const tags = [
      entry('r.io/plugins/app', 'c1', '2026-02-28T00:00:00Z', 1),
      entry('r.io/plugins/app', 'c2', '2026-02-27T00:00:00Z', 2),
      entry('r.io/plugins/app', 'c3', '2026-02-26T00:00:00Z', 3),
      entry('r.io/plugins/app', 'c4', '2026-02-25T00:00:00Z', 4),
      entry('r.io/plugins/app', 'v1.0', '2025-01-01T00:00:00Z', 5),
      entry('r.io/plugins/app', 'old', '2025-12-01T00:00:00Z', 6),
    ];

    // Act
    const kept = applyRetention(tags, retentionFor(config, 'r.io/plugins/app'), now).map((m) => m.tag);

    // Assess
    expect(kept.sort()).toEqual(['c1', 'c2', 'c3', 'v1.0']);
  });
});

describe('retention in the publisher, and garbage collection', () => {
  let dir: string;
  let store: ObjectStore;
  let signer: Signer;
  let now: Date;
  const clock: Clock = { now: () => now };
  let app: ReturnType<typeof createMirrorApp>;
  const tags = async () => (await listAllEntries(store)).map((m) => m.tag).sort();
  const put = (n: number) =>
    store.put(storageKeys.module(n.toString(16).padStart(64, '0')), Buffer.from(`module ${n}`), {
      contentType: 'application/wasm',
    });
  const stored = async (n: number) =>
    (await store.head(storageKeys.module(n.toString(16).padStart(64, '0')))) !== undefined;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-retention-'));
    store = await FsObjectStore.open({ root: join(dir, 'data') });
    signer = await loadOrCreateKey(join(dir, 'private'));
    now = new Date('2026-03-01T00:00:00Z');
    app = createMirrorApp({
      config,
      store,
      signer,
      clock,
      logger: silentLogger,
      metrics: noMetrics,
    } as unknown as PipelineDeps);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('prunes a repository as new tags arrive and deletes bytes only after every listing expired', async () => {
    // Prepare: four nightly tags, one hour apart; the override keeps two.
    const name = 'r.io/plugins/nightly/app';
    for (let i = 1; i <= 4; i++) await put(i);
    const requests: PublishRequest[] = [];
    for (let i = 1; i <= 4; i++) {
      requests.push({
        kind: 'record',
        record: entry(name, `n${i}`, new Date(now.getTime() - (5 - i) * HOUR).toISOString(), i),
      });
    }

    // Act: the publish lists the two newest; the scheduled pass notes the unlisted modules.
    await app.publish(requests);
    const listed = await tags();
    await app.publish([{ kind: 'resign', reason: 'schedule' }]);
    const afterNote = [await stored(1), await stored(2)];
    now = new Date(now.getTime() + 2 * HOUR);
    await app.publish([{ kind: 'resign', reason: 'schedule' }]);
    const beforeGrace = [await stored(1), await stored(2)];
    now = new Date(now.getTime() + 2 * HOUR);
    await app.publish([{ kind: 'resign', reason: 'schedule' }]);

    // Assess
    expect(listed).toEqual(['n3', 'n4']);
    expect(afterNote).toEqual([true, true]);
    expect(beforeGrace).toEqual([true, true]);
    expect([await stored(1), await stored(2), await stored(3), await stored(4)]).toEqual([
      false,
      false,
      true,
      true,
    ]);
  });

  it('drops tags that grew too old on the scheduled pass, keeping pinned ones', async () => {
    // Prepare
    const name = 'r.io/plugins/app';
    await app.publish([
      { kind: 'record', record: entry(name, 'v2.0', '2026-02-27T00:00:00Z', 1) },
      { kind: 'record', record: entry(name, 'c9', '2026-02-27T00:00:00Z', 2) },
    ]);

    // Act: 40 days later, past the source's maxAge of 30 days.
    now = new Date(now.getTime() + 40 * 24 * HOUR);
    await app.publish([{ kind: 'resign', reason: 'schedule' }]);

    // Assess
    expect(await tags()).toEqual(['v2.0']);
  });
});
