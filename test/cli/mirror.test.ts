import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { startEmbedded } from '../../shared/embedded/runtime.ts';
import { runBin } from '../support/cli.ts';
import { pushWasm, startRegistry, type TestRegistry } from '../support/index.ts';
import { fetchManifest, sha256Of, waitForManifest } from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const cli = runBin;

/** `wasm-mirror mirror <ref> --plain-http --data DIR --json`, as the tests run it against the local registry. */
const mirrorJson = (ref: string, data: string) =>
  cli(['mirror', ref, '--plain-http', '--data', data, '--json']);

describe('wasm-mirror mirror', () => {
  let registry: TestRegistry;
  let dir: string;
  const modules = [proxyWasmModule({ marker: 'cli one' }), proxyWasmModule({ marker: 'cli two' })];

  beforeAll(async () => {
    registry = await startRegistry();
    await pushWasm(registry.host, 'plugins/one:1.0', modules[0]!, 'wasm-artifact');
    await pushWasm(registry.host, 'plugins/two:2.0', modules[1]!, 'compat-oci');
    dir = mkdtempSync(join(tmpdir(), 'wm-cli-mirror-'));
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('mirrors and publishes on its own, and skips what is already listed', async () => {
    const data = join(dir, 'alone');
    const first = await mirrorJson(`${registry.host}/plugins/one:1.0`, data);
    expect(first.code, first.stderr).toBe(0);
    const out = JSON.parse(first.stdout) as Record<string, unknown>;
    expect(out).toMatchObject({
      status: 'mirrored',
      sha256: sha256Of(modules[0]!),
      manifestVersion: 1,
      publishedBy: 'this command',
    });
    const envelope = JSON.parse(readFileSync(join(data, 'manifests', 'latest.json'), 'utf8')) as {
      payload: string;
    };
    const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as {
      modules: { tag: string }[];
    };
    expect(payload.modules).toHaveLength(1);
    expect(payload.modules[0]!.tag).toBe('1.0');
    const again = await mirrorJson(`${registry.host}/plugins/one:1.0`, data);
    expect(JSON.parse(again.stdout)).toMatchObject({ status: 'already-listed', manifestVersion: 1 });
  });

  it('fails when it cannot publish, rather than reporting a listing that did not happen', async () => {
    const data = join(dir, 'blocked');
    const first = await mirrorJson(`${registry.host}/plugins/one:1.0`, data);
    expect(first.code, first.stderr).toBe(0);
    // Version 2 cannot be written: a directory stands where the file would go.
    mkdirSync(join(data, 'manifests', 'v2', 'index', '2.json'), { recursive: true });
    const second = await mirrorJson(`${registry.host}/plugins/two:2.0`, data);
    expect(second.code).toBe(1);
    expect(second.stdout).toBe('');
    expect(second.stderr).toMatch(/wasm-mirror mirror: [A-Z_]+: /);
  });

  it('hands its result to a server running on the same data directory', async () => {
    const data = join(dir, 'shared');
    const config = parseConfig('mirror: { name: local-mirror }');
    const server = await startEmbedded({ config, dataDir: data, port: 0, logger: silentLogger, env: {} });
    try {
      await waitForManifest(server.url, (p) => p.version >= 1);
      const run = await mirrorJson(`${registry.host}/plugins/two:2.0`, data);
      expect(run.code, run.stderr).toBe(0);
      const result = JSON.parse(run.stdout) as { manifestVersion: number };
      expect(result).toMatchObject({ status: 'mirrored', publishedBy: 'running server' });
      // The command returns once the server lists the module, with the version that does.
      const listed = await waitForManifest(server.url, (p) =>
        p.modules.some((m) => m.sha256 === sha256Of(modules[1]!)),
      );
      expect(result.manifestVersion).toBeGreaterThanOrEqual(1);
      expect(result.manifestVersion).toBeLessThanOrEqual(listed.payload.version);
      expect(listed.payload.modules[0]!.format).toBe('compat-image');
      expect(
        (await fetchManifest(server.url, `manifests/${listed.payload.version}.json`))?.payload.version,
      ).toBe(listed.payload.version);
    } finally {
      await server.stop();
    }
  });

  it('several commands at once with no server: each waits its turn and every module is listed', async () => {
    // Prepare
    const data = join(dir, 'concurrent');
    const refs: string[] = [];
    for (let i = 0; i < 6; i++) {
      const ref = `${registry.host}/plugins/burst${i}:1.0`;
      await pushWasm(
        registry.host,
        `plugins/burst${i}:1.0`,
        proxyWasmModule({ marker: `burst ${i}` }),
        'wasm-artifact',
      );
      refs.push(ref);
    }

    // Act
    const runs = await Promise.all(refs.map((ref) => mirrorJson(ref, data)));

    // Assess
    for (const run of runs) expect(run.code, run.stderr).toBe(0);
    const latest = JSON.parse(readFileSync(join(data, 'manifests', 'latest.json'), 'utf8')) as {
      payload: string;
    };
    const payload = JSON.parse(Buffer.from(latest.payload, 'base64').toString('utf8')) as {
      modules: { name: string }[];
    };
    expect(payload.modules.map((m) => m.name).sort()).toEqual(
      refs.map((r) => r.replace(/:1\.0$/, '')).sort(),
    );
    for (const run of runs) expect(JSON.parse(run.stdout).publishedBy).toBe('this command');
  });

  it('refuses plain http to a configured source that does not allow it, and bad usage', async () => {
    const bad = await cli(['mirror', 'not a reference', '--data', join(dir, 'x')]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('INVALID_REFERENCE');
    const usage = await cli(['mirror', '--bogus']);
    expect(usage.code).toBe(2);
    const none = await cli(['mirror']);
    expect(none.code).toBe(2);
    const unreachable = await cli([
      'mirror',
      '127.0.0.1:1/plugins/x:1',
      '--plain-http',
      '--data',
      join(dir, 'y'),
    ]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/REGISTRY_UNAVAILABLE/);
  });
});
