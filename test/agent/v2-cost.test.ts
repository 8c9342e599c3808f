/**
 * What an up-to-date agent spends after a publish that changes one entry, measured against a
 * test mirror serving v2 with gzip, at 500 and 50,000 entries: selecting everything, and
 * selecting five names (the change inside or outside them). Printed, with v1's whole manifest
 * beside it for comparison; only the request counts, which the format fixes, are asserted.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { WasmMirrorAgent } from '../../shared/agent/index.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { binOf, signManifest } from '../../shared/core/manifest/index.ts';
import { newSigner, payloadOf, sha256Hex, T0, trusted } from '../manifest/helpers.ts';
import { fixedClock } from './agent-helpers.ts';
import { TestMirror, wasmBytes } from './mirror-server.ts';

const NOW = new Date(T0.getTime() + 3600e3);
const dirs: string[] = [];

afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** n entries shaped like real ones (distinct digests), sharing a few module blobs. */
function entriesOf(n: number, blobs: ManifestModule[]): ManifestModule[] {
  return Array.from({ length: n }, (_, i) => {
    const blob = blobs[i % blobs.length]!;
    const name = `ghcr.io/org-${i % 97}/plugin-${Math.floor(i / 4)}`;
    const tag = `1.${i % 4}.0`;
    return { ...blob, name, tag, ociDigest: `sha256:${sha256Hex(`oci:${name}:${tag}`)}` };
  });
}

interface Measure {
  requests: number;
  nodes: number;
  manifestBytes: number;
}

describe('the cost of a one-entry change', () => {
  it('is the index and one node per level on the changed path, at 500 and 50,000 entries', {
    timeout: 180_000,
  }, async () => {
    const signer = newSigner();
    const keys = [await trusted(signer)];
    const rows: string[] = [];
    for (const n of [500, 50_000]) {
      // Prepare
      const mirror = await new TestMirror().start();
      try {
        const blobs = [0, 1, 2, 3].map((i) => mirror.addModule(`blob-${i}`, wasmBytes(`blob-${i}`, 256)));
        const entries = entriesOf(n, blobs);
        const v42 = await mirror.publishIndex(signer, entries, { version: 42 });
        const depth = v42.payload.depth;
        const five = [...new Set(entries.map((m) => m.name))].slice(0, 5);
        const agentDirs: string[] = [];
        const agentFor = (select: string[]) => {
          const dir = mkdtempSync(join(tmpdir(), 'wm-cost-'));
          dirs.push(dir);
          agentDirs.push(dir);
          return new WasmMirrorAgent({
            mirrorUrl: mirror.url,
            mirrorName: 'prod-mesh',
            trustedKeys: keys,
            dir,
            clock: fixedClock(NOW),
            select,
          });
        };
        const everything = agentFor([]);
        const fiveNames = agentFor(five);
        await everything.syncOnce();
        await fiveNames.syncOnce();
        // A new tag of one of the five names, pointing at a new module.
        const added = { ...mirror.addModule(five[0]!, wasmBytes(`changed-${n}`, 256), '2.0.0') };
        await mirror.publishIndex(signer, [...entries, added], { version: 43 });

        // Act
        const measure = async (agent: WasmMirrorAgent): Promise<Measure> => {
          const r = await agent.syncOnce();
          return { requests: r.requests, nodes: r.nodesFetched, manifestBytes: r.manifestBytes };
        };
        const all = await measure(everything);
        const selectedChanged = await measure(fiveNames);
        // Then a change outside the five names' bins.
        const outsider = entries.find((m) => !five.some((f) => binOf(f, depth) === binOf(m.name, depth)))!;
        await mirror.publishIndex(signer, [...entries, added, { ...outsider, tag: '9.9.9' }], {
          version: 44,
        });
        const selectedUnchanged = await measure(fiveNames);
        const v1 = (await signManifest(payloadOf([...entries, added], { version: 43 }), signer)).bytes;
        // What each agent holds of the manifest between syncs: the walk file.
        const [heldAll, heldFive] = agentDirs.map((d) => statSync(join(d, 'agent-tree.json')).size);
        everything.close();
        fiveNames.close();

        // Assess: requests are fixed by the format (the module download is one more)
        expect(all).toMatchObject({ nodes: depth, requests: 1 + depth + 1 });
        expect(selectedChanged).toMatchObject({ nodes: depth, requests: 1 + depth + 1 });
        expect(selectedUnchanged.requests).toBeLessThanOrEqual(1 + depth);
        // What five names hold does not grow with the mirror: their bins and the pages above them.
        expect(heldFive!).toBeLessThan(64 * 1024);
        const kib = (b: number) => `${(b / 1024).toFixed(2)} KiB`;
        rows.push(
          `${n} entries (depth ${depth}): everything ${kib(all.manifestBytes)} in ${all.requests} requests` +
            ` (${all.nodes} nodes + index + 1 module); 5 names, change inside ${kib(selectedChanged.manifestBytes)}` +
            ` in ${selectedChanged.requests}; 5 names, change elsewhere ${kib(selectedUnchanged.manifestBytes)}` +
            ` in ${selectedUnchanged.requests}; v1 would send ${kib(v1.length)} (${kib(gzipSync(v1).length)} gzipped);` +
            ` walk file: everything ${kib(heldAll!)}, 5 names ${kib(heldFive!)}`,
        );
      } finally {
        await mirror.stop();
      }
    }
    console.log(`manifest bytes (as received, gzip) for a one-entry change:\n${rows.join('\n')}`);
  });
});
