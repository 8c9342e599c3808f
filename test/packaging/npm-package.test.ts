/**
 * The CLI outside the repository: `npm pack` makes a package that installs globally with no
 * network (it has no dependencies: the CLI is one bundled file) and runs from the install prefix,
 * in a directory that is not the repository.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const run = promisify(execFile);

/** The environment without the npm_* variables an outer `npm test` sets, which would steer npm. */
const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_')));

describe('npm pack → npm install --global --offline', () => {
  let dir: string;
  let prefix: string;
  let tarball: string;
  let bin: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-package-'));
    prefix = join(dir, 'prefix');
    const env = cleanEnv();
    const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
    });
    // prepack's output precedes the JSON on stdout.
    const [info] = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string }[];
    tarball = join(dir, info!.filename);
    await run(
      'npm',
      ['install', '--global', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tarball],
      { cwd: dir, env, encoding: 'utf8' },
    );
    bin = join(prefix, 'bin', 'wasm-mirror');
  }, 120_000);
  afterAll(() => {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('packs the bundle and the launcher only, and declares no dependencies', () => {
    // Act
    const installed = join(prefix, 'lib', 'node_modules', 'wasm-mirror');
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')) as Record<string, unknown>;
    // Assess
    expect(pkg.dependencies ?? {}).toEqual({});
    expect(existsSync(join(installed, 'dist', 'wasm-mirror.mjs'))).toBe(true);
    // No sources and nothing installed beside it: the bundle is all it runs.
    expect(existsSync(join(installed, 'shared'))).toBe(false);
    expect(existsSync(join(installed, 'node_modules'))).toBe(false);
    expect(readdirSync(installed).sort()).toEqual(['README.md', 'bin', 'dist', 'package.json']);
    // Well under the repository's size: a sign that nothing else slipped in.
    expect(statSync(tarball).size).toBeLessThan(2 * 1024 * 1024);
  });

  it('runs `wasm-mirror --help` from the install prefix', async () => {
    // Act
    const { stdout } = await run(bin, ['--help'], { cwd: dir, env: cleanEnv(), encoding: 'utf8' });
    // Assess
    expect(stdout).toContain('usage: wasm-mirror <command>');
    expect(stdout).toContain('keygen');
  });

  it('runs `wasm-mirror keygen` from the install prefix', async () => {
    // Prepare
    const out = join(dir, 'keys');
    // Act
    const { stdout } = await run(bin, ['keygen', '--out', out], {
      cwd: dir,
      env: cleanEnv(),
      encoding: 'utf8',
    });
    // Assess
    expect(stdout).toMatch(/^keyid:\s+[0-9a-f]{64}$/m);
    expect(readFileSync(join(out, 'signing-key.pub.pem'), 'utf8')).toContain('BEGIN PUBLIC KEY');
    expect(statSync(join(out, 'signing-key.pem')).mode & 0o777).toBe(0o600);
  });
});
