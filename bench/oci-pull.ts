/**
 * Registry API benchmark: a ~100 MiB plugin pulled with `skopeo copy docker://… dir:…` from the
 * embedded mirror's `/v2/` and from the local CNCF Distribution registry it was mirrored from,
 * same machine, same client, alternating, median of runs. Goal: mirror/registry ≤ 1.0.
 *
 *   npx tsx bench/oci-pull.ts [--size-mib 100] [--runs 5]
 *
 * Shapes: a Wasm artifact (the module is the layer) and a Docker compat image (a gzipped tar
 * layer). Both servers send the same bytes from files on the same disk; the mirror also checks
 * the signed listing and the manifest's digest on each manifest request.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { largeWasm, pushWasm, startHarness } from '../test/support/index.ts';
import { waitForManifest } from '../test/support/mirror.ts';

const MiB = 1024 * 1024;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

const execFileAsync = promisify(execFile);

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
  const harness = await startHarness({
    mirrorName: 'bench',
    sources: `  - { id: local, type: distribution, registry: "{registry}", insecure: true, repositories: ["bench/**"], webhookSecretEnv: HOOK_TOKEN }`,
  });
  const work = mkdtempSync(join(tmpdir(), 'wm-bench-oci-'));
  const mirrorHost = new URL(harness.mirror.url).host;
  const rows: string[] = [];
  try {
    const shapes = [
      { shape: 'artifact', format: 'wasm-artifact' as const },
      { shape: 'compat', format: 'compat-docker' as const },
    ];
    for (const [i, { shape, format }] of shapes.entries()) {
      const repository = `bench/${shape}`;
      await pushWasm(harness.registry.host, `${repository}:v1`, largeWasm(size), format);
      await harness.mirror.deps.mirrorQueue.send({
        sourceId: 'local',
        registry: harness.registry.host,
        repository,
        tag: 'v1',
        receivedAt: new Date().toISOString(),
      });
      await waitForManifest(harness.mirror.url, (p) => p.modules.length === i + 1, 300_000);
      const fromRegistry = `docker://${harness.registry.host}/${repository}:v1`;
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
          .padStart(8)} ms ${(m / r).toFixed(2).padStart(6)}   registry [${registry.map((x) => x.toFixed(0)).join(', ')}] mirror [${mirror.map((x) => x.toFixed(0)).join(', ')}]`,
      );
    }
  } finally {
    await harness.stop();
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
