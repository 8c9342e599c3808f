/**
 * Errors that say the fix: each mistake a newcomer makes first gets a message naming where it is
 * and what to do, as the command prints it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { storageKeys } from '../../shared/core/domain.ts';
import { writeKeysJson } from '../../shared/core/pipeline/publish.ts';
import { freePort, pushWasm, runCli, startRegistry, type TestRegistry } from '../support/index.ts';
import { proxyWasmModule } from '../support/wasm.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'wasm-mirror.mjs');

describe('errors that say the fix', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'wm-errors-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a YAML syntax error gives the file, line and column, and shows the line', async () => {
    // Prepare
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'mirror:\n  name: prod-mesh\n  name: again\nsources: []\n');
    // Act / Assess
    const r = await runCli(['serve', '--config', file, '--data', join(dir, 'data-yaml'), '--port', '0']);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`wasm-mirror serve: CONFIG_INVALID: ${file}: line 3, column 3: not valid YAML`);
    expect(r.err).toContain('  3 |   name: again\n    |   ^\n');

    // Tab indentation, a classic: the caret sits under the tab.
    expect(() => parseConfig('mirror:\n\tname: x\n', 'wasm-mirror.config.yaml')).toThrow(
      /^wasm-mirror\.config\.yaml: line 2, column 1: not valid YAML or JSON: Tabs are not allowed/,
    );
  });

  it('an unknown option names itself, the likely intended one, and points at --help', async () => {
    // Act / Assess
    const r = await runCli(['pull', 'r.io/a:b', '-o', join(dir, 'x.wasm'), '--plain-htp']);
    expect(r.code).toBe(2);
    expect(r.err).toBe(
      "wasm-mirror pull: USAGE: unknown option '--plain-htp' (did you mean --plain-http?)\n" +
        "Run 'wasm-mirror pull --help' for its options.\n",
    );
    const serve = await runCli(['serve', '--prot', '9000']);
    expect(serve.err).toContain("unknown option '--prot' (did you mean --port?)");
    const far = await runCli(['keygen', '--frobnicate']);
    expect(far.err).toBe(
      "wasm-mirror keygen: USAGE: unknown option '--frobnicate'\nRun 'wasm-mirror keygen --help' for its options.\n",
    );
  });

  it('a repository outside the allow-list names the source and its globs', async () => {
    // Prepare
    const config = join(dir, 'allow.yaml');
    writeFileSync(
      config,
      [
        'sources:',
        '  - id: local',
        '    type: distribution',
        '    registry: 127.0.0.1:5999',
        '    insecure: true',
        '    repositories: ["plugins/**", "team-a/*"]',
        '    webhookSecretEnv: LOCAL_HOOK_TOKEN',
        '',
      ].join('\n'),
    );
    // Act
    const r = await runCli([
      'mirror',
      '127.0.0.1:5999/other/filter:1.0',
      '--config',
      config,
      '--data',
      join(dir, 'data-allow'),
    ]);
    // Assess
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `REGISTRY_NOT_ALLOWED: repository other/filter is not in source 'local''s allow-list (repositories: "plugins/**", "team-a/*")`,
    );
    expect(r.err).toContain("add a glob that matches it to that source's repositories");
  });

  it('keys.json follows a mirror renamed in the config, keeping its keys', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root: join(dir, 'data-rename') });
    const signer = await loadOrCreateKey(join(dir, 'data-rename-key'));
    const read = async () =>
      JSON.parse(Buffer.from((await store.getBytes(storageKeys.keys, 1 << 20))!.bytes).toString('utf8')) as {
        mirror: string;
        keys: { keyid: string }[];
      };
    // Act / Assess
    await writeKeysJson({ store, signer, config: parseConfig('mirror: { name: old-name }') });
    const before = await read();
    expect(before.mirror).toBe('old-name');
    await writeKeysJson({ store, signer, config: parseConfig('mirror: { name: new-name }') });
    const after = await read();
    expect(after.mirror).toBe('new-name');
    expect(after.keys).toEqual(before.keys);
  });

  describe('registry errors, as `wasm-mirror pull` prints them', () => {
    let plain: Server;
    let plainHost: string;
    let connections = 0;
    let registry: TestRegistry;

    beforeAll(async () => {
      // An http server where https was asked for: a TLS hello reaches a plain-http registry.
      plain = createServer((_req, res) => res.end('{}'));
      plain.on('connection', () => connections++);
      await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve));
      plainHost = `127.0.0.1:${(plain.address() as { port: number }).port}`;
      registry = await startRegistry();
      await pushWasm(
        registry.host,
        'plugins/filter:1.0',
        proxyWasmModule({ marker: 'errors' }),
        'wasm-artifact',
      );
    });
    afterAll(async () => {
      plain?.close();
      await registry?.stop();
    });

    it('plain http registry pulled without --plain-http: suggests --plain-http, at once', async () => {
      // Act
      const started = Date.now();
      const r = await runCli(['pull', `${plainHost}/plugins/filter:1.0`, '-o', join(dir, 'p.wasm')]);
      // Assess
      expect(r.code).toBe(1);
      expect(r.err).toContain(`REGISTRY_UNAVAILABLE: ${plainHost} answered an https request in plain http`);
      expect(r.err).toContain('pass --plain-http (or set insecure: true on its source in the config)');
      // Retrying cannot change the server's protocol: one connection, no backoff.
      expect(connections).toBe(1);
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('connection refused names the host and port', async () => {
      // Prepare
      const port = await freePort();
      // Act
      const r = await runCli([
        'pull',
        `127.0.0.1:${port}/plugins/filter:1.0`,
        '-o',
        join(dir, 'r.wasm'),
        '--plain-http',
      ]);
      // Assess
      expect(r.code).toBe(1);
      expect(r.err).toContain(`cannot connect to 127.0.0.1:${port}: connection refused (ECONNREFUSED)`);
    });

    it('a missing tag keeps the tag in the message', async () => {
      // Act / Assess
      const r = await runCli([
        'pull',
        `${registry.host}/plugins/filter:9.9`,
        '-o',
        join(dir, 't.wasm'),
        '--plain-http',
      ]);
      expect(r.code).toBe(1);
      expect(r.err).toContain(
        `MANIFEST_UNKNOWN: ${registry.host}/plugins/filter:9.9: tag 9.9 not found in ${registry.host}/plugins/filter (404 MANIFEST_UNKNOWN`,
      );
      // A repository that does not exist: this registry answers MANIFEST_UNKNOWN too, with the tag kept.
      const repo = await runCli([
        'pull',
        `${registry.host}/plugins/nothing:1.0`,
        '-o',
        join(dir, 't.wasm'),
        '--plain-http',
      ]);
      expect(repo.err).toContain(`${registry.host}/plugins/nothing:1.0: `);
    });
  });

  describe('serve start-up output', () => {
    let child: ChildProcess | undefined;
    afterAll(() => {
      child?.kill('SIGTERM');
    });

    it('warns about a source whose webhookSecretEnv is not set', async () => {
      // Prepare
      const config = join(dir, 'serve.yaml');
      const source = (id: string, env: string) => [
        `  - id: ${id}`,
        '    type: distribution',
        '    registry: 127.0.0.1:5000',
        '    insecure: true',
        '    repositories: ["**"]',
        `    webhookSecretEnv: ${env}`,
      ];
      writeFileSync(
        config,
        [
          'sources:',
          ...source('unset', 'WM_TEST_UNSET_TOKEN'),
          ...source('set', 'WM_TEST_SET_TOKEN'),
          '',
        ].join('\n'),
      );
      const env: NodeJS.ProcessEnv = { ...process.env, WM_TEST_SET_TOKEN: 'secret' };
      delete env.WM_TEST_UNSET_TOKEN;
      // Act
      const proc = spawn(
        process.execPath,
        [BIN, 'serve', '--port', '0', '--data', join(dir, 'data-serve'), '--config', config],
        {
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      child = proc;
      let stdout = '';
      await new Promise<void>((resolve, reject) => {
        proc.stdout!.on('data', (d: Buffer) => {
          stdout += d.toString('utf8');
          if (/\n {2}webhook .*\/hooks\/set .*\n/.test(stdout)) resolve();
        });
        proc.on('exit', (code) => reject(new Error(`serve exited ${code}: ${stdout}`)));
        setTimeout(() => reject(new Error(`no start-up output: ${stdout}`)), 30_000);
      });
      // The whole block is written at once; give the pipe a moment to deliver it.
      await new Promise((r) => setTimeout(r, 200));
      // Assess
      expect(stdout).toContain(
        "  warning   WM_TEST_UNSET_TOKEN is not set, so source 'unset' refuses every webhook (401): set it to the shared secret the registry sends and restart",
      );
      expect(stdout).not.toContain('WM_TEST_SET_TOKEN is not set');
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      child = undefined;
    });
  });
});
