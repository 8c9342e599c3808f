/**
 * `wasm-mirror push <file.wasm> <ref>` through the bin, against the real Debian registry: each
 * format read back by skopeo (manifest, media types, layers) and by `wasm-mirror pull` (the same
 * sha256 as the file), the same digest on every push of the same module, anonymous, htpasswd and
 * token registries, and errors that name what failed and the fix.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  MEDIA,
  proxyWasmModule,
  runCli,
  startRegistry,
  type TestRegistry,
} from '../support/index.ts';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'wasm-mirror.mjs');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end, with optional standard input and extra environment. */
function run(command: string, args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) {
  return new Promise<Run>((resolve, reject) => {
    const child = spawn(command, args, { env: { ...process.env, ...opts.env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('utf8');
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString('utf8');
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

const cli = (args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}) =>
  run(process.execPath, [BIN, ...args], opts);

/** skopeo against the plain-http test registry; its output, or a thrown error with skopeo's message. */
async function skopeo(args: string[], creds?: string): Promise<string> {
  const auth = creds === undefined ? [] : ['--creds', creds];
  const [verb, ...rest] = args;
  const result = await run('skopeo', [verb!, ...auth, ...rest], { env: { HOME: dir } });
  if (result.code !== 0) throw new Error(`skopeo ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

interface Manifest {
  mediaType: string;
  config: { mediaType: string; digest: string };
  layers: { mediaType: string; digest: string; size: number }[];
}

const FORMATS = [
  {
    format: 'compat',
    pulledAs: 'compat-image',
    config: MEDIA.ociConfig,
    layers: [MEDIA.ociLayerGzip],
  },
  {
    format: 'wasm-artifact',
    pulledAs: 'wasm-artifact',
    config: MEDIA.wasmArtifactConfig,
    layers: [MEDIA.wasmArtifactConfig, MEDIA.wasmArtifactLayer],
  },
  {
    format: 'cncf-wasm',
    pulledAs: 'cncf-wasm',
    config: MEDIA.cncfWasmConfig,
    layers: [MEDIA.cncfWasmLayer],
  },
] as const;

const module = proxyWasmModule({ marker: 'push from the cli' });
const moduleHex = createHash('sha256').update(module).digest('hex');
let dir: string;
let file: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'wm-cli-push-'));
  file = join(dir, 'filter.wasm');
  writeFileSync(file, module);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('wasm-mirror push to an anonymous registry', () => {
  let registry: TestRegistry;

  beforeAll(async () => {
    registry = await startRegistry();
  });
  afterAll(async () => {
    await registry?.stop();
  });

  describe.each(FORMATS)('--format $format', ({ format, pulledAs, config, layers }) => {
    const ref = () => `${registry.host}/plugins/${format}:1.0`;
    let pushed: { digest: string; size: number; mediaType: string; format: string; pinned: string };

    beforeAll(async () => {
      const result = await cli(['push', file, ref(), '--format', format, '--plain-http', '--json']);
      expect(result.code, result.stderr).toBe(0);
      pushed = JSON.parse(result.stdout);
    });

    it('prints the manifest digest, size, media type and format', () => {
      // Assess
      expect(pushed).toMatchObject({
        reference: ref(),
        mediaType: MEDIA.ociManifest,
        format: pulledAs,
        module: { sha256: moduleHex, size: module.length, kind: 'module', abi: 'proxy_abi_version_0_2_1' },
        blobs: { uploaded: expect.any(Number), existing: expect.any(Number) },
      });
      expect(pushed.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
      expect(pushed.pinned).toBe(`${registry.host}/plugins/${format}@${pushed.digest}`);
    });

    it('is what skopeo reads back: manifest digest, media types and layers', async () => {
      // Act
      const raw = await skopeo(['inspect', '--tls-verify=false', '--raw', `docker://${ref()}`]);
      const rawConfig = await skopeo([
        'inspect',
        '--tls-verify=false',
        '--config',
        '--raw',
        `docker://${ref()}`,
      ]);

      // Assess
      expect(`sha256:${createHash('sha256').update(raw).digest('hex')}`).toBe(pushed.digest);
      expect(Buffer.byteLength(raw)).toBe(pushed.size);
      const manifest = JSON.parse(raw) as Manifest;
      expect(manifest.mediaType).toBe(MEDIA.ociManifest);
      expect(manifest.config.mediaType).toBe(config);
      expect(`sha256:${createHash('sha256').update(rawConfig).digest('hex')}`).toBe(manifest.config.digest);
      expect(manifest.layers.map((l) => l.mediaType)).toEqual(layers);
    });

    if (format === 'compat') {
      it('is an ordinary image to skopeo: its platform and its one layer', async () => {
        // Act
        const image = JSON.parse(await skopeo(['inspect', '--tls-verify=false', `docker://${ref()}`])) as {
          Digest: string;
          Architecture: string;
          Os: string;
          Layers: string[];
        };
        const raw = await skopeo(['inspect', '--tls-verify=false', '--raw', `docker://${ref()}`]);

        // Assess
        expect(image).toMatchObject({ Digest: pushed.digest, Architecture: 'wasm', Os: 'wasip1' });
        expect(image.Layers).toEqual((JSON.parse(raw) as Manifest).layers.map((l) => l.digest));
      });
    }

    it('copies with skopeo into an OCI layout, content intact', async () => {
      // Prepare
      const layout = join(dir, `layout-${format}`);

      // Act
      await skopeo([
        'copy',
        '--src-tls-verify=false',
        '--preserve-digests',
        `docker://${ref()}`,
        `oci:${layout}:copy`,
      ]);

      // Assess
      const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as {
        manifests: { digest: string }[];
      };
      expect(index.manifests.map((m) => m.digest)).toEqual([pushed.digest]);
      const blob = (digest: string) => readFileSync(join(layout, 'blobs', 'sha256', digest.slice(7)));
      const manifest = JSON.parse(blob(pushed.digest).toString('utf8')) as Manifest;
      const last = manifest.layers[manifest.layers.length - 1]!;
      if (format === 'compat') {
        const layerFile = join(layout, 'blobs', 'sha256', last.digest.slice(7));
        const extracted = execFileSync('tar', ['-xzOf', layerFile, 'plugin.wasm']);
        expect(createHash('sha256').update(extracted).digest('hex')).toBe(moduleHex);
      } else {
        expect(last.digest).toBe(`sha256:${moduleHex}`);
        expect(createHash('sha256').update(blob(last.digest)).digest('hex')).toBe(moduleHex);
      }
    });

    it('is what `wasm-mirror pull` extracts: the same sha256 as the file', async () => {
      // Prepare
      const out = join(dir, `pulled-${format}.wasm`);

      // Act
      const pulled = await cli(['pull', ref(), '-o', out, '--plain-http', '--json']);

      // Assess
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(JSON.parse(pulled.stdout)).toMatchObject({
        sha256: moduleHex,
        format: pulledAs,
        ociDigest: pushed.digest,
      });
      expect(createHash('sha256').update(readFileSync(out)).digest('hex')).toBe(moduleHex);
    });

    it('gives the same digest when the same module is pushed again', async () => {
      // Prepare
      const copy = join(dir, `copy-${format}.wasm`);
      writeFileSync(copy, module);

      // Act
      const again = await cli([
        'push',
        copy,
        `${registry.host}/other/${format}:2.0`,
        '--format',
        format,
        '--plain-http',
        '--json',
      ]);

      // Assess
      expect(again.code, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout).digest).toBe(pushed.digest);
    });
  });

  it('pushes the compat image by default and prints a readable summary', async () => {
    // Act
    const result = await cli(['push', file, `${registry.host}/plugins/default`, '--plain-http']);

    // Assess
    expect(result.code, result.stderr).toBe(0);
    const compat = await cli([
      'push',
      file,
      `${registry.host}/plugins/default:compat`,
      '--format',
      'compat',
      '--plain-http',
      '--json',
    ]);
    const digest = JSON.parse(compat.stdout).digest as string;
    expect(result.stdout).toMatch(new RegExp(`^digest: +${digest}\n`));
    expect(result.stdout).toContain(`reference: ${registry.host}/plugins/default:latest\n`);
    expect(result.stdout).toMatch(/format: +compat-image\n/);
    expect(result.stdout).toContain(`sha256:    ${moduleHex}\n`);
  });

  it('refuses a file that is not Wasm, naming it, and pushes nothing', async () => {
    // Prepare
    const text = join(dir, 'notes.wasm');
    writeFileSync(text, 'these are notes, not a module');

    // Act
    const result = await cli(['push', text, `${registry.host}/plugins/notes:1.0`, '--plain-http']);

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wasm-mirror push: NOT_WASM: .*notes\.wasm.*\\0asm/);
    const tags = await fetch(`${registry.url}/v2/plugins/notes/tags/list`);
    expect(tags.status).toBe(404);
  });

  it('refuses a module that does not validate', async () => {
    // Prepare: a type section that declares one type and holds none.
    const bad = join(dir, 'bad.wasm');
    writeFileSync(bad, Uint8Array.of(0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 1, 1, 1));

    // Act
    const result = await cli(['push', bad, `${registry.host}/plugins/bad:1.0`, '--plain-http']);

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wasm-mirror push: INVALID_WASM: .*bad\.wasm/);
  });

  it('suggests --plain-http when the registry does not speak TLS', async () => {
    // Act
    const result = await cli(['push', file, `${registry.host}/plugins/tls:1.0`]);

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('INSECURE_NOT_ALLOWED');
    expect(result.stderr).toContain(`${registry.host} answers plain http, not TLS`);
    expect(result.stderr).toContain('add --plain-http');
  });
});

describe('wasm-mirror push with credentials', () => {
  let htpasswd: TestRegistry;
  let token: TestRegistry;

  beforeAll(async () => {
    [htpasswd, token] = await Promise.all([
      startRegistry({ auth: 'htpasswd' }),
      startRegistry({ auth: 'token' }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([htpasswd?.stop(), token?.stop()]);
  });

  it.each([
    ['htpasswd (Basic)', () => htpasswd],
    ['token (Bearer)', () => token],
  ])('pushes to a %s registry with --username and --password-stdin', async (_name, registry) => {
    // Prepare
    const reg = registry();
    const ref = `${reg.host}/plugins/private:1.0`;
    const creds = ['--username', reg.username!, '--password-stdin'];

    // Act
    const pushed = await cli(['push', file, ref, '--plain-http', '--json', ...creds], {
      stdin: `${reg.password}\n`,
    });

    // Assess
    expect(pushed.code, pushed.stderr).toBe(0);
    const { digest } = JSON.parse(pushed.stdout) as { digest: string };
    const raw = await skopeo(
      ['inspect', '--tls-verify=false', '--raw', `docker://${ref}`],
      `${reg.username}:${reg.password}`,
    );
    expect(`sha256:${createHash('sha256').update(raw).digest('hex')}`).toBe(digest);
    const out = join(dir, `private-${reg.host.replace(':', '_')}.wasm`);
    const pulled = await cli(['pull', ref, '-o', out, '--plain-http', '--json', ...creds], {
      stdin: reg.password!,
    });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(JSON.parse(pulled.stdout)).toMatchObject({ sha256: moduleHex, ociDigest: digest });
  });

  it('takes credentials from WASM_MIRROR_USERNAME and WASM_MIRROR_PASSWORD', async () => {
    // Act
    const result = await cli(['push', file, `${htpasswd.host}/plugins/env:1.0`, '--plain-http'], {
      env: { WASM_MIRROR_USERNAME: htpasswd.username!, WASM_MIRROR_PASSWORD: htpasswd.password! },
    });

    // Assess
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^digest: +sha256:/);
  });

  it('says credentials are needed, and how to give them, when none were given', async () => {
    // Act
    const result = await cli(['push', file, `${htpasswd.host}/plugins/anon:1.0`, '--plain-http']);

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wasm-mirror push: UNAUTHORIZED: /);
    expect(result.stderr).toContain('--username U --password-stdin');
  });

  it.each([
    ['htpasswd (Basic)', () => htpasswd],
    ['token (Bearer)', () => token],
  ])('says the credentials were refused by a %s registry', async (_name, registry) => {
    // Prepare
    const reg = registry();

    // Act
    const result = await cli(
      [
        'push',
        file,
        `${reg.host}/plugins/wrong:1.0`,
        '--plain-http',
        '-u',
        reg.username!,
        '--password-stdin',
      ],
      { stdin: 'not-the-password\n' },
    );

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^wasm-mirror push: UNAUTHORIZED: .*refused the credentials/);
    expect(result.stderr).toContain('check the user name and password');
  });
});

describe('wasm-mirror push errors and usage', () => {
  it('names host:port when the connection is refused', async () => {
    // Prepare
    const host = `127.0.0.1:${await freePort()}`;

    // Act
    const result = await cli(['push', file, `${host}/plugins/x:1.0`, '--plain-http']);

    // Assess
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`REGISTRY_UNAVAILABLE: cannot connect to ${host}: connection refused`);
    expect(result.stderr).toContain(`check that a registry listens on ${host}`);
  });

  it('explains every flag in --help', async () => {
    // Act
    const result = await cli(['push', '--help']);
    const overview = await cli(['--help']);

    // Assess
    expect(result.code).toBe(0);
    for (const flag of ['--format', '--plain-http', '--username', '--password-stdin', '--json', '--help']) {
      expect(result.stdout).toMatch(new RegExp(`^ +(-\\w, )?${flag}\\b.*\\S`, 'm'));
    }
    for (const format of ['compat', 'wasm-artifact', 'cncf-wasm']) {
      expect(result.stdout).toMatch(new RegExp(`^ +${format} `, 'm'));
    }
    expect(overview.stdout).toMatch(/^ +push +\S/m);
  });

  it.each([
    [['push']],
    [['push', 'filter.wasm']],
    [['push', 'filter.wasm', 'r.io/a:1', 'r.io/b:2']],
    [['push', 'filter.wasm', 'r.io/a:1', '--format', 'zip']],
    [['push', 'filter.wasm', `r.io/a@sha256:${'a'.repeat(64)}`]],
    [['push', 'filter.wasm', 'r.io/a:1', '--username', 'u']],
    [['push', 'filter.wasm', 'r.io/a:1', '--password-stdin']],
    [['push', 'filter.wasm', 'r.io/a:1', '--password', 'secret']],
  ])('exits 2 on usage errors: %j', async (argv) => {
    // Act
    const r = await runCli(argv);

    // Assess
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^wasm-mirror push: USAGE: /);
  });
});
