/**
 * The README's "Your first module in five minutes", run as written: every fenced `sh` block between
 * `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->`, in order, each with
 * `bash -euo pipefail`, in a temp directory standing in for a fresh clone. A block after
 * `<!-- walkthrough:background -->` is a server the README starts in another terminal: the test
 * starts it in the background, waits until it answers, and stops it by its pid at the end.
 *
 * What differs from a reader's run, and nothing else:
 * - ports: the registry and the mirror listen on free ports the test picks, so `127.0.0.1:5000`,
 *   `127.0.0.1:8080` and `--port 8080` are replaced in the commands and in the copies of
 *   examples/first-module/ the commands read;
 * - the clone: the temp directory holds the repository's `package.json` and `bin/` as symlinks
 *   (`npm start` and `npx wasm-mirror` run the repository's CLI) and those copies of the
 *   examples, so whatever the walkthrough writes (hello.wasm, registry-data, wasm-mirror-data,
 *   trusted-keys.json, wasm-agent, …) lands in the temp directory, not in the working tree.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { freePort } from '../support/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const EXAMPLE = join(ROOT, 'examples', 'first-module');

interface Block {
  script: string;
  background: boolean;
}

/** The `sh` blocks of the walkthrough section, in order. */
function walkthroughBlocks(): Block[] {
  const start = README.indexOf('<!-- walkthrough:start -->');
  const end = README.indexOf('<!-- walkthrough:end -->');
  expect(start, 'README has <!-- walkthrough:start -->').toBeGreaterThan(-1);
  expect(end, 'README has <!-- walkthrough:end --> after the start').toBeGreaterThan(start);
  const section = README.slice(start, end);
  return [...section.matchAll(/(<!-- walkthrough:background -->\s*)?```sh\n([\s\S]*?)```/g)].map((m) => ({
    script: m[2]!,
    background: m[1] !== undefined,
  }));
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('README walkthrough: your first module in five minutes', () => {
  let dir: string;
  let registryPort: number;
  let mirrorPort: number;
  const servers: { script: string; child: ChildProcess; closed: Promise<void>; output: () => string }[] = [];

  /** The README's ports replaced by the test's. */
  const localize = (text: string) =>
    text
      .replaceAll('127.0.0.1:5000', `127.0.0.1:${registryPort}`)
      .replaceAll('127.0.0.1:8080', `127.0.0.1:${mirrorPort}`)
      .replaceAll('--port 8080', `--port ${mirrorPort}`);

  const env = () => {
    const e: NodeJS.ProcessEnv = { ...process.env };
    // A reader's shell has no token set; the walkthrough sets it on the command line.
    delete e.LOCAL_HOOK_TOKEN;
    return e;
  };

  /** Runs a foreground block to its end (a hung `until` loop fails the test instead of stalling it). */
  const runBlock = (script: string, timeoutMs = 30_000) =>
    new Promise<Ran>((resolve, reject) => {
      const child = spawn('bash', ['-euo', 'pipefail', '-c', script], { cwd: dir, env: env() });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString('utf8');
      });
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString('utf8');
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
    });

  /** Starts a background block in its own process group, so stopping it stops what it started. */
  const startServer = (script: string) => {
    const child = spawn('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: dir,
      env: env(),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    const keep = (d: Buffer) => {
      output = (output + d.toString('utf8')).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    // Its pipes close once every process of the group that holds them has exited.
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    servers.push({ script, child, closed, output: () => output });
    return servers.at(-1)!;
  };

  /** Waits until `url` answers 200, failing early with the server's output if it exits. */
  const waitFor = async (url: string, server: (typeof servers)[number]) => {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (server.child.exitCode !== null)
        throw new Error(`\`${server.script.trim()}\` exited (${server.child.exitCode}):\n${server.output()}`);
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`\`${server.script.trim()}\` did not answer ${url}:\n${server.output()}`);
  };

  beforeAll(async () => {
    registryPort = await freePort();
    mirrorPort = await freePort();
    dir = mkdtempSync(join(tmpdir(), 'wm-walkthrough-'));
    symlinkSync(join(ROOT, 'package.json'), join(dir, 'package.json'));
    symlinkSync(join(ROOT, 'bin'), join(dir, 'bin'));
    mkdirSync(join(dir, 'examples', 'first-module'), { recursive: true });
    for (const name of readdirSync(EXAMPLE)) {
      writeFileSync(
        join(dir, 'examples', 'first-module', name),
        localize(readFileSync(join(EXAMPLE, name), 'utf8')),
      );
    }
  });

  afterAll(async () => {
    // Stopped by pid: each server's process group (bash, npm, node; or docker-registry), which
    // may outlive the bash that started it.
    const signal = (pid: number, sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig);
      } catch {
        // the group is gone already
      }
    };
    await Promise.all(
      servers.map(async ({ child, closed }) => {
        if (child.pid === undefined) return;
        signal(child.pid, 'SIGTERM');
        const timer = setTimeout(() => signal(child.pid!, 'SIGKILL'), 5000);
        await closed;
        clearTimeout(timer);
      }),
    );
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  });

  it('the example configs use the ports the test replaces and one mirror name', () => {
    // Act
    const registryYml = readFileSync(join(EXAMPLE, 'registry.yml'), 'utf8');
    const mirrorYml = readFileSync(join(EXAMPLE, 'wasm-mirror.config.yaml'), 'utf8');
    // Assess
    expect(registryYml).toContain('addr: 127.0.0.1:5000');
    expect(registryYml).toContain('url: http://127.0.0.1:8080/hooks/local');
    expect(mirrorYml).toContain('registry: 127.0.0.1:5000');
    // Pull events are filtered at the registry, in the form Distribution 2.8 reads.
    expect(parseYaml(registryYml).notifications.endpoints[0].ignore.actions).toEqual(['pull']);
    // Every --mirror-name of the walkthrough is the config's name (another fails with WRONG_MIRROR).
    const name = parseYaml(mirrorYml).mirror.name as string;
    const pinned = walkthroughBlocks().flatMap((b) =>
      [...b.script.matchAll(/--mirror-name (\S+)/g)].map((m) => m[1]),
    );
    expect(pinned.length).toBeGreaterThan(0);
    expect(new Set(pinned)).toEqual(new Set([name]));
  });

  it('runs every command of the section and ends with a WasmPlugin pinned to the pushed module', async () => {
    // Prepare
    const blocks = walkthroughBlocks();
    const outputs: { script: string; stdout: string }[] = [];
    const ready: Record<string, string> = {
      'docker-registry serve': `http://127.0.0.1:${registryPort}/v2/`,
      'npm start': `http://127.0.0.1:${mirrorPort}/healthz`,
    };
    // Act
    for (const block of blocks) {
      const script = localize(block.script);
      // Every 5000 and 8080 is one the test replaced: none left would reach a reader's servers.
      expect(script).not.toMatch(/:5000\b|:8080\b|--port 8080\b/);
      if (block.background) {
        const url = Object.entries(ready).find(([command]) => script.includes(command))?.[1];
        if (url === undefined) throw new Error(`no readiness URL known for the background block ${script}`);
        await waitFor(url, startServer(script));
        continue;
      }
      const ran = await runBlock(script);
      if (ran.code !== 0) {
        const logs = servers.map((s) => `--- ${s.script.trim()}\n${s.output()}`).join('\n');
        throw new Error(`block failed (${ran.code}):\n${script}\n${ran.stdout}\n${ran.stderr}\n${logs}`);
      }
      outputs.push({ script, stdout: ran.stdout });
    }
    // Assess
    expect(servers.length).toBe(2);
    const outputOf = (command: string) => {
      const found = outputs.filter((o) => o.script.includes(command));
      expect(found.length, `one block runs ${command}`).toBe(1);
      return found[0]!.stdout;
    };

    const module = readFileSync(join(dir, 'hello.wasm'));
    const hex = createHash('sha256').update(module).digest('hex');
    const name = `127.0.0.1:${registryPort}/plugins/hello`;

    // The push prints the manifest digest and the module's sha256.
    const pushed = outputOf('wasm-mirror push');
    const digest = /^digest:\s+(sha256:[0-9a-f]{64})$/m.exec(pushed)?.[1];
    expect(digest, pushed).toBeDefined();
    expect(pushed).toMatch(new RegExp(`^sha256:\\s+${hex}$`, 'm'));

    // The verified manifest lists it under the one mirror name, with that sha256 and digest.
    const listing = JSON.parse(outputOf('wasm-mirror verify'));
    expect(listing.mirror).toBe('first-mirror');
    expect(listing.modules).toEqual([
      expect.objectContaining({ name, tag: '1.0', sha256: hex, ociDigest: digest, size: module.length }),
    ]);

    // The agent wrote the module under its sha256, and those are the pushed bytes.
    expect(outputOf('wasm-mirror agent').split('\n')).toContain(`${hex}.wasm`);
    const synced = readFileSync(join(dir, 'wasm-agent', 'modules', 'sha256', `${hex}.wasm`));
    expect(createHash('sha256').update(synced).digest('hex')).toBe(hex);
    expect(existsSync(join(dir, 'wasm-agent', 'manifest.json'))).toBe(true);

    // The WasmPlugin points at the mirror's copy, pinned to that sha256.
    const plugin = parseYaml(outputOf('wasm-mirror wasmplugin'));
    expect(plugin).toMatchObject({
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'WasmPlugin',
      metadata: { name: 'hello' },
      spec: {
        selector: { matchLabels: { app: 'hello' } },
        url: `http://127.0.0.1:${mirrorPort}/modules/sha256/${hex}.wasm`,
        sha256: hex,
      },
    });

    // The registry sent one webhook, the manifest push: no pull events (the mirror's own pull
    // included) and no blob pushes reached the mirror.
    const metrics = await (await fetch(`http://127.0.0.1:${mirrorPort}/metrics`)).text();
    const webhooks = metrics
      .split('\n')
      .filter((l) => /^\w*webhooks_total\{/.test(l) && l.includes('source="local"'));
    expect(webhooks.length, metrics).toBeGreaterThan(0);
    const total = webhooks.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect(total, webhooks.join('\n')).toBe(1);
  });
});
