/**
 * A tag never moves back in the embedded runtime: records and deliveries replayed out of order
 * after the tag moved change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ModuleRecord } from '../../shared/core/domain.ts';
import { type Harness, pushWasm, startHarness } from '../support/index.ts';
import {
  DISTRIBUTION_EVENTS_V1,
  distributionEnvelope,
  sha256Of,
  waitForManifest,
  waitForQueuesSettled,
} from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const TOKEN = 'tag-order-token-0123456789';

describe('embedded runtime: records replayed out of order never move a tag back', () => {
  let harness: Harness;

  const deliver = async (digest: string, id: string) => {
    const res = await fetch(`${harness.mirror.url}/hooks/local`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: distributionEnvelope([
        { id, repository: 'plugins/order', tag: 'stable', digest, host: harness.registry.host },
      ]),
    });
    expect(res.status).toBe(202);
  };
  const listed = async () =>
    (await waitForManifest(harness.mirror.url, () => true)).payload.modules.filter((m) =>
      m.name.endsWith('/plugins/order'),
    );

  beforeAll(async () => {
    harness = await startHarness({ mirrorName: 'order-mesh', token: TOKEN });
  });
  afterAll(() => harness?.stop());

  it('keeps the newest digest of a tag when older records and deliveries arrive late', async () => {
    // Prepare: the tag is pushed at A, mirrored, then moved to B and mirrored.
    const a = proxyWasmModule({ marker: 'order a' });
    const b = proxyWasmModule({ marker: 'order b' });
    const pushedA = await pushWasm(harness.registry.host, 'plugins/order:stable', a, 'wasm-artifact');
    await deliver(pushedA.digest, 'order-a');
    await waitForManifest(harness.mirror.url, (p) => p.modules.some((m) => m.sha256 === sha256Of(a)));
    const entryA = (await listed())[0]!;
    const pushedB = await pushWasm(harness.registry.host, 'plugins/order:stable', b, 'wasm-artifact');
    await deliver(pushedB.digest, 'order-b');
    await waitForManifest(harness.mirror.url, (p) => p.modules.some((m) => m.sha256 === sha256Of(b)));

    // Act: A's record is replayed to the publisher (as a re-driven message would be, once with its
    // observation time and once as an earlier version wrote it), and A's delivery is replayed too.
    const recordA: ModuleRecord = { ...entryA, kind: 'module', observedAt: entryA.mirroredAt };
    const { observedAt: _, ...legacyA } = recordA;
    await harness.mirror.deps.publishQueue.send({ kind: 'record', record: recordA });
    await harness.mirror.deps.publishQueue.send({ kind: 'record', record: legacyA });
    await deliver(pushedA.digest, 'order-a-replayed');
    await waitForQueuesSettled(harness.mirror.url);

    // Assess
    expect((await listed()).map((m) => m.sha256)).toEqual([sha256Of(b)]);
  });
});
