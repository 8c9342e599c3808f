/**
 * Crash safety: the server is killed with SIGKILL again and again while pushes arrive, mirrors
 * run and manifests are published. After the last restart every pushed module is listed exactly
 * once, every manifest version from 1 to latest is intact and correctly signed, and latest.json
 * is the newest of them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, killChild, pushWasm, startRegistry, type TestRegistry } from '../support/index.ts';
import { fetchManifest, opensslVerifies, sha256Of, waitForManifest } from '../support/mirror.ts';
import { largeWasm, proxyWasmModule } from '../support/wasm.ts';

const TOKEN = 'crash-suite-token-123456';
const ROOT = join(import.meta.dirname, '..', '..');

describe('crash safety of the embedded mirror', () => {
  let registry: TestRegistry;
  let dataDir: string;
  let port: number;
  let server: ChildProcess | undefined;
  let configPath: string;

  const startServer = async () => {
    server = spawn(
      process.execPath,
      [
        join(ROOT, 'bin', 'wasm-mirror.mjs'),
        'serve',
        '--port',
        String(port),
        '--data',
        dataDir,
        '--config',
        configPath,
      ],
      {
        env: { ...process.env, HOOK_TOKEN: TOKEN },
        stdio: ['ignore', 'ignore', 'ignore'],
      },
    );
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/healthz`);
        if (res.ok) return;
      } catch {
        // not up yet
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('server did not start');
  };

  beforeAll(async () => {
    port = await freePort();
    registry = await startRegistry({
      notificationsUrl: `http://127.0.0.1:${port}/hooks/local`,
      notificationsToken: TOKEN,
    });
    dataDir = mkdtempSync(join(tmpdir(), 'wm-crash-'));
    configPath = join(dataDir, '..', `${dataDir.split('/').pop()}.yaml`);
    writeFileSync(
      configPath,
      `mirror: { name: crash-test }
sources:
  - id: local
    type: distribution
    registry: ${registry.host}
    insecure: true
    repositories: ["plugins/**"]
    webhookSecretEnv: HOOK_TOKEN
`,
    );
  });

  afterAll(async () => {
    if (server !== undefined) await killChild(server);
    await registry?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(configPath, { force: true });
  });

  it('loses nothing and lists each module once across repeated kill -9', async () => {
    // Prepare
    await startServer();
    const modules = Array.from({ length: 8 }, (_, i) =>
      i % 2 === 0 ? largeWasm(3 * 1024 * 1024 + i) : proxyWasmModule({ marker: `crash ${i}` }),
    );
    // Act
    const pushes = (async () => {
      for (const [i, bytes] of modules.entries()) {
        await pushWasm(
          registry.host,
          `plugins/crash-${i}:1.0`,
          bytes,
          i % 3 === 0 ? 'compat-oci' : 'wasm-artifact',
        );
      }
    })();
    // Kill at varied moments while pushes, mirrors and publishes are under way.
    for (const delay of [300, 700, 450, 900, 250]) {
      await new Promise((r) => setTimeout(r, delay));
      server!.kill('SIGKILL');
      await new Promise((r) => server!.once('exit', r));
      await startServer();
    }
    await pushes;
    // Assess
    const expected = new Set(modules.map(sha256Of));
    const url = `http://127.0.0.1:${port}`;
    const final = await waitForManifest(
      url,
      (p) => [...expected].every((h) => p.modules.some((m) => m.sha256 === h)),
      90_000,
    );
    expect(final.payload.modules).toHaveLength(modules.length);
    for (const hash of expected)
      expect(final.payload.modules.filter((m) => m.sha256 === hash)).toHaveLength(1);

    const keys = JSON.parse(readFileSync(join(dataDir, 'keys.json'), 'utf8')) as {
      keys: { publicKey: string }[];
    };
    let previous: number[] = [];
    for (let v = 1; v <= final.payload.version; v++) {
      const m = await fetchManifest(url, `manifests/${v}.json`);
      expect(m, `version ${v}`).toBeDefined();
      expect(m!.payload.version).toBe(v);
      expect(opensslVerifies(m!.envelope, keys.keys[0]!.publicKey), `version ${v} signature`).toBe(true);
      // Versions only ever add or replace entries in this scenario: nothing listed disappears.
      const hashes = m!.payload.modules.map((x) => x.size);
      expect(hashes.length).toBeGreaterThanOrEqual(previous.length);
      previous = hashes;
    }
    expect(await fetchManifest(url, `manifests/${final.payload.version + 1}.json`)).toBeUndefined();
    for (const hash of expected) {
      const res = await fetch(`${url}/modules/sha256/${hash}.wasm`);
      expect(sha256Of(new Uint8Array(await res.arrayBuffer()))).toBe(hash);
    }
  }, 180_000);
});
