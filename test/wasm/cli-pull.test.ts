/** `wasm-mirror pull` in-process and through the real bin, against the real registry. */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../shared/cli/io.ts';
import { main } from '../../shared/cli/main.ts';
import { proxyWasmModule, pushWasm, startRegistry, type TestRegistry } from '../support/index.ts';

const execFileAsync = promisify(execFile);
const module = proxyWasmModule({ marker: 'cli' });
const hex = createHash('sha256').update(module).digest('hex');

function memoryIo(opts: { stdin?: string; tty?: boolean } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = {
    stdout: { write: (s: string) => out.push(s), isTTY: false },
    stderr: { write: (s: string) => err.push(s), isTTY: opts.tty ?? false },
    stdin: (async function* () {
      if (opts.stdin !== undefined) yield opts.stdin;
    })(),
    env: {},
  };
  return { io, stdout: () => out.join(''), stderr: () => err.join('') };
}

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
    const out = join(dir, 'a.wasm');
    const t = memoryIo({ stdin: `${reg.password}\n` });
    const code = await main(
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
      t.io,
    );
    expect(t.stderr()).toBe('');
    expect(code).toBe(0);
    expect(JSON.parse(t.stdout())).toEqual({
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
    const t = memoryIo({ stdin: reg.password!, tty: true });
    const args = ['pull', `${reg.host}/plugins/cli@${digest}`, '-o', join(dir, 'b.wasm'), '--plain-http'];
    expect(await main([...args, '-u', reg.username!, '--password-stdin'], t.io)).toBe(0);
    expect(t.stdout()).toContain(`sha256:   ${hex}\n`);
    expect(t.stdout()).toContain(`manifest: ${digest}\n`);
    expect(t.stdout()).toContain('abi:      proxy_abi_version_0_2_1\n');
    expect(t.stderr()).toContain('pulling ');
    const quiet = memoryIo({ stdin: reg.password! });
    expect(await main([...args, '-u', reg.username!, '--password-stdin'], quiet.io)).toBe(0);
    expect(quiet.stderr()).toBe('');
  });

  it.each([
    [['pull']],
    [['pull', 'r.io/a:b']],
    [['pull', 'r.io/a:b', 'r.io/c:d', '-o', 'x']],
    [['pull', 'r.io/a:b', '-o', 'x', '--bogus']],
    [['pull', 'r.io/a:b', '-o', 'x', '--username', 'u']],
    [['pull', 'r.io/a:b', '-o', 'x', '--password-stdin']],
  ])('exits 2 on usage errors: %j', async (argv) => {
    const t = memoryIo();
    expect(await main(argv, t.io)).toBe(2);
    expect(t.stderr()).toMatch(/^wasm-mirror pull: USAGE: /);
  });

  it('exits 1 with the error code on failures', async () => {
    const t = memoryIo();
    const out = join(dir, 'c.wasm');
    expect(await main(['pull', `${reg.host}/plugins/cli:v1`, '-o', out, '--plain-http'], t.io)).toBe(1);
    expect(t.stderr()).toMatch(/^wasm-mirror pull: UNAUTHORIZED: /);
    const bad = memoryIo();
    expect(await main(['pull', 'r.io/Bad:x', '-o', out], bad.io)).toBe(1);
    expect(bad.stderr()).toMatch(/^wasm-mirror pull: INVALID_REFERENCE: /);
    expect(existsSync(out)).toBe(false);
    const nowhere = memoryIo({ stdin: reg.password! });
    const args = [
      'pull',
      `${reg.host}/plugins/cli:v1`,
      '-o',
      join(dir, 'no/such/dir/x.wasm'),
      '--plain-http',
    ];
    expect(await main([...args, '-u', reg.username!, '--password-stdin'], nowhere.io)).toBe(1);
    expect(nowhere.stderr()).toMatch(/^wasm-mirror pull: STORAGE_FAILURE: /);
  });

  it('works through the installed bin', async () => {
    const out = join(dir, 'd.wasm');
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
    expect(stdout).toContain(hex);
    expect(new Uint8Array(readFileSync(out))).toEqual(module);
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
