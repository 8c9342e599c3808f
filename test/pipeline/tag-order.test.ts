/**
 * A tag never moves back: the publisher keeps, per (name, tag), the newest registry observation
 * and ignores records about older ones, whatever order they arrive in.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { parseConfig } from '../../shared/core/config.ts';
import type { ModuleRecord } from '../../shared/core/domain.ts';
import { createPublisher } from '../../shared/core/pipeline/publish.ts';
import { readLatestManifest } from '../../shared/core/pipeline/state.ts';
import type { Clock, ObjectStore, PublishRequest, Signer } from '../../shared/core/ports.ts';
import { noMetrics, silentLogger } from '../../shared/core/ports.ts';

const config = parseConfig('mirror: { name: order-mesh }');

/** Digest `n` of `r.io/app:stable`, observed at `observedAt`. */
function observed(n: number, observedAt: string | undefined, tag = 'stable'): PublishRequest {
  const hex = n.toString(16).padStart(64, '0');
  const record: ModuleRecord = {
    name: 'r.io/app',
    tag,
    ociDigest: `sha256:${hex.replace(/^0/, 'e')}`,
    sha256: hex,
    size: 100 + n,
    format: 'wasm-artifact',
    kind: 'module',
    // As the mirror writes it: the listed time is the observation.
    mirroredAt: observedAt ?? '2026-01-10T12:00:00Z',
  };
  if (observedAt !== undefined) record.observedAt = observedAt;
  return { kind: 'record', record };
}

describe('publisher: the newest observation of a tag wins', () => {
  let dir: string;
  let store: ObjectStore;
  let signer: Signer;
  const clock: Clock = { now: () => new Date('2026-01-10T13:00:00Z') };
  let publish: (requests: PublishRequest[]) => Promise<unknown>;
  const listedSha = async (tag = 'stable') =>
    (await readLatestManifest(store))?.payload.modules.find((m) => m.tag === tag)?.sha256;
  const hex = (n: number) => n.toString(16).padStart(64, '0');

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-order-'));
    store = await FsObjectStore.open({ root: join(dir, 'data') });
    signer = await loadOrCreateKey(join(dir, 'private'));
    publish = createPublisher({ config, store, signer, clock, logger: silentLogger, metrics: noMetrics });
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('ignores a record about an older observation that arrives later (a re-driven message)', async () => {
    // Prepare
    await publish([observed(1, '2026-01-10T12:00:00.100Z')]);
    await publish([observed(2, '2026-01-10T12:00:00.200Z')]);

    // Act
    await publish([observed(1, '2026-01-10T12:00:00.100Z')]);

    // Assess
    expect(await listedSha()).toBe(hex(2));
  });

  it('keeps the newest of several observations in one batch, whatever their order', async () => {
    // Prepare
    const batch = [
      observed(3, '2026-01-10T12:00:00.300Z'),
      observed(5, '2026-01-10T12:00:00.500Z'),
      observed(4, '2026-01-10T12:00:00.400Z'),
    ];

    // Act
    await publish(batch);

    // Assess
    expect(await listedSha()).toBe(hex(5));
  });

  it('remembers a re-observation of the listed digest, so an older record about another digest loses', async () => {
    // Prepare: A listed at t1; the tag moves to B (t2) and back to A (t3); B's record is late.
    await publish([observed(1, '2026-01-10T12:00:01.000Z')]);
    await publish([observed(1, '2026-01-10T12:00:03.000Z')]);

    // Act
    await publish([observed(2, '2026-01-10T12:00:02.000Z')]);

    // Assess
    expect(await listedSha()).toBe(hex(1));
  });

  it('ties keep what was admitted first', async () => {
    // Prepare
    await publish([observed(1, '2026-01-10T12:00:00.100Z')]);

    // Act
    await publish([observed(2, '2026-01-10T12:00:00.100Z')]);

    // Assess
    expect(await listedSha()).toBe(hex(1));
  });

  it('orders records from earlier versions (no observedAt) by their mirroredAt', async () => {
    // Prepare: a manifest written before observations were stored lists digest 2 at 12:00:05.
    await publish([observed(2, undefined)]);
    const legacy = observed(2, undefined) as { kind: 'record'; record: ModuleRecord };
    legacy.record.mirroredAt = '2026-01-10T12:00:05Z';
    await publish([observed(9, '2026-01-10T12:00:06.000Z', 'other'), legacy as PublishRequest]);

    // Act: an older record arrives, then a newer one.
    await publish([observed(1, '2026-01-10T11:00:00.000Z')]);
    const afterOlder = await listedSha();
    await publish([observed(3, '2026-01-10T12:30:00.000Z')]);

    // Assess
    expect(afterOlder).toBe(hex(2));
    expect(await listedSha()).toBe(hex(3));
  });

  it('orders each tag on its own', async () => {
    // Prepare
    await publish([observed(1, '2026-01-10T12:00:09.000Z', 'a')]);

    // Act
    await publish([observed(2, '2026-01-10T12:00:01.000Z', 'b')]);

    // Assess
    expect(await listedSha('a')).toBe(hex(1));
    expect(await listedSha('b')).toBe(hex(2));
  });
});
