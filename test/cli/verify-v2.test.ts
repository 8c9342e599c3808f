/**
 * `wasm-mirror verify` and `wasmplugin` on a v2 mirror: the index and every node it pins are
 * verified, the whole list is printed in v1's shape, and a tampered node fails the command.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { spkiToPem } from '../../shared/core/manifest/index.ts';
import { createPublisher } from '../../shared/core/pipeline/publish.ts';
import { noMetrics, silentLogger } from '../../shared/core/ports.ts';
import { runCli } from '../support/index.ts';

let work: string;
let data: string;
let keys: string;

const cli = (...argv: string[]) => runCli(argv);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'wm-verify-v2-'));
  data = join(work, 'data');
  const store = await FsObjectStore.open({ root: data });
  const signer = await loadOrCreateKey(join(work, 'private'));
  keys = join(work, 'trusted.pem');
  writeFileSync(keys, spkiToPem(await signer.publicKeySpki()));
  const config = parseConfig('mirror: { name: v2-cli, legacyManifest: false }');
  const publish = createPublisher({
    config,
    store,
    signer,
    clock: { now: () => new Date() },
    logger: silentLogger,
    metrics: noMetrics,
  });
  await publish(
    Array.from({ length: 300 }, (_, i) => ({
      kind: 'record' as const,
      record: {
        name: `ghcr.io/acme/plugin-${i}`,
        tag: '1.0',
        ociDigest: `sha256:${i.toString(16).padStart(64, 'a')}`,
        sha256: i.toString(16).padStart(64, '0'),
        size: 10 + i,
        format: 'wasm-artifact' as const,
        kind: 'module' as const,
        mirroredAt: new Date().toISOString(),
      },
    })),
  );
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('verify on a v2 data directory', () => {
  it('verifies the index and its nodes and prints every entry in v1 shape', async () => {
    // Act
    const r = await cli(
      'verify',
      join(data, 'manifests', 'v2', 'index.json'),
      '--trusted-keys',
      keys,
      '--mirror-name',
      'v2-cli',
    );

    // Assess
    expect(r.code, r.err).toBe(0);
    const payload = JSON.parse(r.out) as { type: string; modules: { name: string }[] };
    expect(payload.type).toBe('wasm-mirror.manifest/v1');
    expect(payload.modules).toHaveLength(300);
    expect(r.err).toMatch(/version 1, 300 modules, .*manifest v2/);
  });

  it('fails when a node was tampered with', async () => {
    // Prepare
    const nodes = join(data, 'manifests', 'v2', 'nodes', 'sha256');
    const victim = readdirSync(nodes)[0]!;
    writeFileSync(join(nodes, victim), '{"type":"wasm-mirror.bin/v2","prefix":"0","modules":[]}');

    // Act
    const r = await cli('verify', join(data, 'manifests', 'v2', 'index.json'), '--trusted-keys', keys);

    // Assess
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/NODE_HASH_MISMATCH/);
  });
});
