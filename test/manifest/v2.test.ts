/**
 * Manifest v2 trees: whole builds and in-place edits give the same nodes, every node is checked
 * against its pin and its position, and a change touches one bin and the pages above it.
 */
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import type { ManifestModule } from '../../shared/core/domain.ts';
import {
  binOf,
  buildTree,
  decodeNode,
  depthFor,
  encodeNode,
  type NodeLoader,
  readBin,
  TreeEditor,
  walkEntries,
} from '../../shared/core/manifest/index.ts';

function entry(i: number, tag = '1.0'): ManifestModule {
  const hex = i.toString(16).padStart(64, '0');
  return {
    name: `ghcr.io/acme/plugin-${i}`,
    tag,
    ociDigest: `sha256:${hex.replace(/^0/, 'd')}`,
    sha256: hex,
    size: 1000 + i,
    format: 'wasm-artifact',
    kind: 'module',
    abi: 'proxy_abi_version_0_2_1',
    mirroredAt: '2026-01-10T11:59:58Z',
  };
}

const loaderOf =
  (nodes: Map<string, Uint8Array>): NodeLoader =>
  async (sha) =>
    nodes.get(sha);

describe('manifest v2 tree', () => {
  it('grows its depth with the mirror, aiming at small bins', () => {
    // Act
    const depths = [0, 500, 4096, 50_000, 1_000_000].map((n) => depthFor(n));

    // Assess
    expect(depths).toEqual([1, 2, 2, 3, 4]);
    expect(depthFor(10, 3)).toBe(3);
  });

  it('an edit produces exactly the nodes a whole rebuild does', async () => {
    // Prepare
    const modules = Array.from({ length: 600 }, (_, i) => entry(i));
    const depth = depthFor(modules.length);
    const before = buildTree(modules, depth);
    const changed = { ...entry(7), tag: '2.0' };
    const editor = new TreeEditor(before.root, depth, before.entries, loaderOf(before.nodes));

    // Act
    const prefix = binOf(changed.name, depth);
    editor.setBin(prefix, [...(await editor.bin(prefix)), changed]);
    const after = await editor.commit();
    const rebuilt = buildTree([...modules, changed], depth);

    // Assess
    expect(after.root).toEqual(rebuilt.root);
    expect(after.entries).toBe(601);
    // One bin and the page above it are new; nothing else.
    expect(after.nodes.size).toBe(depth);
    for (const [sha, bytes] of after.nodes) expect(rebuilt.nodes.get(sha)).toEqual(bytes);
  });

  it('reads a bin and walks every entry through checked nodes', async () => {
    // Prepare
    const modules = Array.from({ length: 300 }, (_, i) => entry(i));
    const tree = buildTree(modules, 2);
    const load = loaderOf(tree.nodes);

    // Act
    const bin = await readBin(tree.root, 2, binOf(modules[42]!.name, 2), load);
    const all: ManifestModule[] = [];
    for await (const m of walkEntries(tree.root, 2, load)) all.push(m);

    // Assess
    expect(bin.map((m) => m.name)).toContain(modules[42]!.name);
    expect(all).toHaveLength(300);
    expect(new Set(all.map((m) => m.name)).size).toBe(300);
  });

  it('refuses a node that does not match its pin, its position or its bin', () => {
    // Prepare
    const depth = 2;
    const name = entry(1).name;
    const prefix = binOf(name, depth);
    const bin = encodeNode({ type: 'wasm-mirror.bin/v2', prefix, modules: [entry(1)] });
    const stranger = entry(2);
    const wrongBin = encodeNode({ type: 'wasm-mirror.bin/v2', prefix, modules: [stranger] });
    const otherPrefix = prefix === 'ff' ? 'fe' : 'ff';

    // Act / Assess
    expect(decodeNode(bin.bytes, bin.sha256, prefix, depth)).toMatchObject({ prefix });
    expect(() => decodeNode(bin.bytes, 'a'.repeat(64), prefix, depth)).toThrow(/NODE_HASH_MISMATCH|pins/);
    expect(() => decodeNode(bin.bytes, bin.sha256, otherPrefix, depth)).toThrow(/says it is/);
    if (binOf(stranger.name, depth) !== prefix) {
      expect(() => decodeNode(wrongBin.bytes, wrongBin.sha256, prefix, depth)).toThrow(/does not hash into/);
    }
    const padded = new Uint8Array([...bin.bytes, 0x20]);
    expect(() =>
      decodeNode(
        padded,
        encodeNode({ type: 'wasm-mirror.bin/v2', prefix, modules: [] }).sha256,
        prefix,
        depth,
      ),
    ).toThrow();
  });

  it('a one-entry change costs one small bin and a page or two on the wire', async () => {
    // Prepare
    const sizes: Record<number, number> = {};
    for (const n of [500, 50_000]) {
      const modules = Array.from({ length: n }, (_, i) => entry(i));
      const depth = depthFor(n);
      const tree = buildTree(modules, depth);
      const editor = new TreeEditor(tree.root, depth, tree.entries, loaderOf(tree.nodes));
      const changed = { ...entry(3), tag: '9.9' };
      const prefix = binOf(changed.name, depth);

      // Act
      editor.setBin(prefix, [...(await editor.bin(prefix)), changed]);
      const { nodes } = await editor.commit();

      // Assess: what an up-to-date agent downloads (gzip), the signed index aside.
      sizes[n] = [...nodes.values()].reduce((total, bytes) => total + gzipSync(bytes).byteLength, 0);
    }
    expect(sizes[500]).toBeLessThan(3 * 1024);
    expect(sizes[50_000]).toBeLessThan(3 * 1024);
  });
});
