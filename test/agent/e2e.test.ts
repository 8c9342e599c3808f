/**
 * End to end: a push to a real registry notifies the embedded mirror, which mirrors and signs;
 * the agent (the CLI command, in-process) verifies the manifest with keys.json pinned and lands
 * the module in its directory; `wasmplugin` then points Istio at exactly those bytes.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { type EmbeddedMirror, startEmbedded } from '../../shared/embedded/runtime.ts';
import { freePort, pushWasm, runCli, startRegistry, type TestRegistry } from '../support/index.ts';
import { sha256Of, waitForManifest } from '../support/mirror.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const TOKEN = 'agent-e2e-hook-token-0123456789';

const cli = (...argv: string[]) => runCli(argv);

describe('registry push → embedded mirror → agent directory', () => {
  let registry: TestRegistry;
  let mirror: EmbeddedMirror;
  let work: string;

  beforeAll(async () => {
    const port = await freePort();
    registry = await startRegistry({
      notificationsUrl: `http://127.0.0.1:${port}/hooks/local`,
      notificationsToken: TOKEN,
    });
    work = mkdtempSync(join(tmpdir(), 'wm-agent-e2e-'));
    const config = parseConfig(`
mirror: { name: e2e-mesh }
sources:
  - { id: local, type: distribution, registry: "${registry.host}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK }
`);
    mirror = await startEmbedded({
      config,
      dataDir: join(work, 'data'),
      port,
      env: { HOOK: TOKEN },
      logger: silentLogger,
    });
  });

  afterAll(async () => {
    await mirror?.stop();
    await registry?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('syncs the pushed module, verified, and prints a WasmPlugin for it', async () => {
    // Prepare
    const bytes = proxyWasmModule({ marker: 'agent e2e' });
    await pushWasm(registry.host, 'plugins/basic-auth:1.0.0', bytes, 'wasm-artifact');
    await waitForManifest(mirror.url, (p) => p.modules.length === 1, 60_000);

    const keysFile = join(work, 'keys.json');
    writeFileSync(keysFile, await (await fetch(`${mirror.url}/keys.json`)).text());
    const dir = join(work, 'agent');
    const agentArgs = [
      'agent',
      '--mirror-url',
      mirror.url,
      '--mirror-name',
      'e2e-mesh',
      '--trusted-keys',
      keysFile,
    ];
    // Act / Assess
    const synced = await cli(...agentArgs, '--dir', dir, '--once');
    expect(synced.code, synced.err).toBe(0);
    const hex = sha256Of(bytes);
    expect(sha256Of(readFileSync(join(dir, 'modules/sha256', `${hex}.wasm`)))).toBe(hex);

    const plugin = await cli(
      'wasmplugin',
      `${registry.host}/plugins/basic-auth:1.0.0`,
      '--from-manifest',
      join(dir, 'manifest.json'),
      '--local-dir',
      dir,
      '--selector',
      'istio=ingressgateway',
    );
    expect(plugin.code, plugin.err).toBe(0);
    expect(parse(plugin.out).spec).toMatchObject({
      url: `file://${dir}/modules/sha256/${hex}.wasm`,
      sha256: hex,
    });

    // The wrong mirror name is refused and nothing is written.
    const wrong = await cli(
      'agent',
      '--mirror-url',
      mirror.url,
      '--mirror-name',
      'other',
      '--trusted-keys',
      keysFile,
      '--dir',
      join(work, 'x'),
      '--once',
    );
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('WRONG_MIRROR');
  });
});
