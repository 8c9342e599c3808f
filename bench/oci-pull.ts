/**
 * Registry API benchmark: a ~100 MiB plugin pulled with `skopeo copy docker://… dir:…` from the
 * embedded mirror's `/v2/` and from the local CNCF Distribution registry it was mirrored from,
 * same machine, same client, alternating, median of runs. Goal: mirror/registry ≤ 1.0.
 *
 *   npx tsx bench/oci-pull.ts [--size-mib 100] [--runs 5]
 *
 * Shapes: a Wasm artifact (the module is the layer) and a Docker compat image (a gzipped tar
 * layer). Each server runs in its own process as users run it (`docker-registry serve`,
 * `wasm-mirror serve`), sending the same bytes from files on the same disk; the mirror also
 * checks the signed listing and the manifest's digest on each manifest request.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { freePort, killChild, largeWasm, pushWasm, startRegistry } from '../test/support/index.ts';
import { waitForManifest } from '../test/support/mirror.ts';

const MiB = 1024 * 1024;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

const execFileAsync = promisify(execFile);
const CLI = join(import.meta.dirname, '..', 'bin', 'wasm-mirror.mjs');

/** `wasm-mirror serve` on a fresh data directory, mirroring `registryHost`'s bench/** repositories. */
async function startMirror(
  registryHost: string,
  work: string,
): Promise<{ url: string; child: ChildProcess; config: string; data: string }> {
  const config = join(work, 'wasm-mirror.config.yaml');
  const data = join(work, 'data');
  writeFileSync(
    config,
    `mirror: { name: bench }\nsources:\n  - { id: local, type: distribution, registry: "${registryHost}", insecure: true, repositories: ["bench/**"], webhookSecretEnv: HOOK_TOKEN }\n`,
  );
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--port', String(port), '--host', '127.0.0.1', '--data', data, '--config', config],
    {
      env: { ...process.env, HOOK_TOKEN: 'bench-hook-token-0123456789' },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  for (const deadline = Date.now() + 60_000; ; ) {
    if (child.exitCode !== null) throw new Error(`wasm-mirror serve exited (${child.exitCode})`);
    const up = await fetch(`${url}/v2/`).then(
      (r) => r.ok,
      () => false,
    );
    if (up) return { url, child, config, data };
    if (Date.now() > deadline) throw new Error('wasm-mirror serve did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Wall time of one `skopeo copy` into a fresh dir (removed afterwards). Asynchronous: the mirror
 * answers from this same process.
 */
async function copyMs(source: string, work: string): Promise<number> {
  const dir = mkdtempSync(join(work, 'copy-'));
  const started = process.hrtime.bigint();
  await execFileAsync(
    'skopeo',
    ['--insecure-policy', 'copy', '--quiet', '--src-tls-verify=false', source, `dir:${dir}/out`],
    { env: { ...process.env, HOME: work } },
  );
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  rmSync(dir, { recursive: true, force: true });
  return ms;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '100' },
      runs: { type: 'string', default: '5' },
    },
  });
  const size = Number(values['size-mib']) * MiB;
  const runs = Number(values.runs);
  const work = mkdtempSync(join(tmpdir(), 'wm-bench-oci-'));
  const registryServer = await startRegistry();
  let mirrorServer: Awaited<ReturnType<typeof startMirror>> | undefined;
  const rows: string[] = [];
  try {
    mirrorServer = await startMirror(registryServer.host, work);
    const mirrorHost = new URL(mirrorServer.url).host;
    const shapes = [
      { shape: 'artifact', format: 'wasm-artifact' as const },
      { shape: 'compat', format: 'compat-docker' as const },
    ];
    for (const [i, { shape, format }] of shapes.entries()) {
      const repository = `bench/${shape}`;
      await pushWasm(registryServer.host, `${repository}:v1`, largeWasm(size), format);
      // Beside the running server, which publishes what this stores.
      await execFileAsync(process.execPath, [
        CLI,
        'mirror',
        `${registryServer.host}/${repository}:v1`,
        '--plain-http',
        '--data',
        mirrorServer.data,
        '--config',
        mirrorServer.config,
      ]);
      await waitForManifest(mirrorServer.url, (p) => p.modules.length === i + 1, 300_000);
      const fromRegistry = `docker://${registryServer.host}/${repository}:v1`;
      const fromMirror = `docker://${mirrorHost}/local/${repository}:v1`;
      // One of each first, untimed: page cache and connections warm for both.
      await copyMs(fromRegistry, work);
      await copyMs(fromMirror, work);
      const registry: number[] = [];
      const mirror: number[] = [];
      for (let run = 0; run < runs; run++) {
        // Alternating order, so neither side always runs on a cooler machine.
        if (run % 2 === 0) {
          registry.push(await copyMs(fromRegistry, work));
          mirror.push(await copyMs(fromMirror, work));
        } else {
          mirror.push(await copyMs(fromMirror, work));
          registry.push(await copyMs(fromRegistry, work));
        }
      }
      const r = median(registry);
      const m = median(mirror);
      rows.push(
        `${shape.padEnd(9)} ${(size / MiB).toFixed(1).padStart(6)} MiB ${r.toFixed(0).padStart(8)} ms ${m
          .toFixed(0)
          .padStart(
            8,
          )} ms ${(m / r).toFixed(2).padStart(6)}   registry [${registry.map((x) => x.toFixed(0)).join(', ')}] mirror [${mirror.map((x) => x.toFixed(0)).join(', ')}]`,
      );
    }
  } finally {
    if (mirrorServer !== undefined) await killChild(mirrorServer.child);
    await registryServer.stop();
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(
    `skopeo copy docker://… dir:…, median of ${runs} runs (goal: mirror/registry <= 1.00)\n` +
      `shape        size     registry     mirror  ratio\n${rows.join('\n')}\n`,
  );
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
