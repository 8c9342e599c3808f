/** `wasm-mirror pull` in-process and through the real bin, against the real registry. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { proxyWasmModule, pushWasm, runCli, startRegistry, type TestRegistry } from '../support/index.ts';

const execFileAsync = promisify(execFile);
const module = proxyWasmModule({ marker: 'cli' });
const hex = createHash('sha256').update(module).digest('hex');

describe('wasm-mirror pull', () => {
  let reg: TestRegistry;
  let dir: string;
  let digest: string;

  beforeAll(async () => {
    reg = await startRegistry({ auth: 'htpasswd' });
    dir = mkdtempSync(join(tmpdir(), 'wm-cli-'));
    ({ digest } = await pushWasm(reg.host, 'plugins/cli:v1', module, 'compat-docker', {
      credentials: { username: reg.username!, password: reg.password! },
    }));
  });
  afterAll(async () => {
    await reg?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('pulls with credentials from stdin and prints JSON', async () => {
    // Prepare
    const out = join(dir, 'a.wasm');
    // Act
    const t = await runCli(
      [
        'pull',
        `oci://${reg.host}/plugins/cli:v1`,
        '-o',
        out,
        '--plain-http',
        '--username',
        reg.username!,
        '--password-stdin',
        '--json',
      ],
      { stdin: `${reg.password}\n` },
    );
    // Assess
    expect(t.err).toBe('');
    expect(t.code).toBe(0);
    expect(JSON.parse(t.out)).toEqual({
      reference: `${reg.host}/plugins/cli:v1`,
      file: out,
      ociDigest: digest,
      sha256: hex,
      size: module.length,
      format: 'compat-image',
      kind: 'module',
      abi: 'proxy_abi_version_0_2_1',
    });
    expect(new Uint8Array(readFileSync(out))).toEqual(module);
  });

  it('prints a readable summary and shows progress only on a terminal', async () => {
    // Prepare
    const args = ['pull', `${reg.host}/plugins/cli@${digest}`, '-o', join(dir, 'b.wasm'), '--plain-http'];
    // Act
    const t = await runCli([...args, '-u', reg.username!, '--password-stdin'], {
      stdin: reg.password!,
      tty: true,
    });
    // Assess
    expect(t.code).toBe(0);
    expect(t.out).toContain(`sha256:   ${hex}\n`);
    expect(t.out).toContain(`manifest: ${digest}\n`);
    expect(t.out).toContain('abi:      proxy_abi_version_0_2_1\n');
    expect(t.err).toContain('pulling ');
    // Act / Assess: not on a terminal.
    const quiet = await runCli([...args, '-u', reg.username!, '--password-stdin'], { stdin: reg.password! });
    expect(quiet.code).toBe(0);
    expect(quiet.err).toBe('');
  });

  it.each([
    [['pull']],
    [['pull', 'r.io/a:b']],
    [['pull', 'r.io/a:b', 'r.io/c:d', '-o', 'x']],
    [['pull', 'r.io/a:b', '-o', 'x', '--bogus']],
    [['pull', 'r.io/a:b', '-o', 'x', '--username', 'u']],
    [['pull', 'r.io/a:b', '-o', 'x', '--password-stdin']],
  ])('exits 2 on usage errors: %j', async (argv) => {
    // Act
    const t = await runCli(argv);
    // Assess
    expect(t.code).toBe(2);
    expect(t.err).toMatch(/^wasm-mirror pull: USAGE: /);
  });

  it('exits 1 with the error code on failures', async () => {
    // Prepare
    const out = join(dir, 'c.wasm');
    // Act / Assess
    const t = await runCli(['pull', `${reg.host}/plugins/cli:v1`, '-o', out, '--plain-http']);
    expect(t.code).toBe(1);
    expect(t.err).toMatch(/^wasm-mirror pull: UNAUTHORIZED: /);
    const bad = await runCli(['pull', 'r.io/Bad:x', '-o', out]);
    expect(bad.code).toBe(1);
    expect(bad.err).toMatch(/^wasm-mirror pull: INVALID_REFERENCE: /);
    expect(existsSync(out)).toBe(false);
    const args = [
      'pull',
      `${reg.host}/plugins/cli:v1`,
      '-o',
      join(dir, 'no/such/dir/x.wasm'),
      '--plain-http',
    ];
    const nowhere = await runCli([...args, '-u', reg.username!, '--password-stdin'], {
      stdin: reg.password!,
    });
    expect(nowhere.code).toBe(1);
    expect(nowhere.err).toMatch(/^wasm-mirror pull: STORAGE_FAILURE: /);
  });

  it('works through the installed bin', async () => {
    // Prepare
    const out = join(dir, 'd.wasm');
    // Act
    const child = execFileAsync('node', [
      'bin/wasm-mirror.mjs',
      'pull',
      `${reg.host}/plugins/cli:v1`,
      '-o',
      out,
      '--plain-http',
      '--username',
      reg.username!,
      '--password-stdin',
    ]);
    child.child.stdin?.end(`${reg.password}\n`);
    const { stdout } = await child;
    // Assess
    expect(stdout).toContain(hex);
    expect(new Uint8Array(readFileSync(out))).toEqual(module);
    // Act / Assess: a failure exits 1.
    const failed = await execFileAsync('node', [
      'bin/wasm-mirror.mjs',
      'pull',
      `${reg.host}/nope:v1`,
      '-o',
      out,
      '--plain-http',
    ]).catch((e: { code: number; stderr: string }) => e);
    expect('code' in failed ? failed.code : 0).toBe(1);
  });
});
