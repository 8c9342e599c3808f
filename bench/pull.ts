/**
 * Pull benchmark: a ~100 MiB module from a local CNCF Distribution registry, pulled with
 * `wasm-mirror pull` and copied with `skopeo copy docker://… dir:…` in the same run, alternating.
 *
 *   npx tsx bench/pull.ts [--size-mib 100] [--runs 3]
 *
 * Module shapes: "data" (one big data segment, like modules embedding rule sets or assets) and
 * "code" (all function bodies, the worst case for validation memory), both as Wasm artifacts, and
 * "compat" (the data module in a Docker compat image: gunzip and tar on our side, while skopeo
 * copies the compressed layer as is). Reported per shape:
 * median wall time of each tool, their ratio, and the CLI's peak RSS (from GNU `time -v`).
 * "library" is the same pull timed inside the process, without Node and TypeScript start-up.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OciWasmPuller } from '../shared/core/wasm/puller.ts';
import { largeCodeWasm, largeWasm, pushWasm, startRegistry } from '../test/support/index.ts';

const MiB = 1024 * 1024;

interface Timed {
  wallMs: number;
  maxRssMiB: number;
}

/** Runs a command under GNU time -v (Debian package `time`); wall time and peak RSS of the command. */
function timed(cmd: string, args: string[]): Timed {
  const started = process.hrtime.bigint();
  const r = spawnSync('time', ['-v', cmd, ...args], { encoding: 'utf8' });
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  if (r.error !== undefined) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr}`);
  const rss = /Maximum resident set size \(kbytes\): (\d+)/.exec(r.stderr);
  return { wallMs, maxRssMiB: rss?.[1] === undefined ? Number.NaN : Number(rss[1]) / 1024 };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

async function child(host: string, repository: string, out: string): Promise<void> {
  const started = process.hrtime.bigint();
  await new OciWasmPuller().pullToFile({ registry: host, repository, reference: 'v1', insecure: true }, out);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(JSON.stringify({ ms, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'size-mib': { type: 'string', default: '100' },
      runs: { type: 'string', default: '3' },
      child: { type: 'string', multiple: true },
    },
  });
  if (values.child !== undefined) {
    const [host, repository, out] = values.child;
    return child(host!, repository!, out!);
  }
  const size = Number(values['size-mib']) * MiB;
  const runs = Number(values.runs);
  const reg = await startRegistry({ auth: 'none' });
  const work = mkdtempSync(join(tmpdir(), 'wm-bench-'));
  const rows: string[] = [];
  try {
    for (const shape of ['data', 'code', 'compat'] as const) {
      const bytes = shape === 'code' ? largeCodeWasm(size) : largeWasm(size);
      const repository = `bench/${shape}`;
      await pushWasm(
        reg.host,
        `${repository}:v1`,
        bytes,
        shape === 'compat' ? 'compat-docker' : 'wasm-artifact',
      );
      const ref = `${reg.host}/${repository}:v1`;
      const skopeo: Timed[] = [];
      const cli: Timed[] = [];
      const lib: { ms: number; maxRssMiB: number }[] = [];
      for (let i = 0; i < runs; i++) {
        const dir = join(work, `skopeo-${shape}-${i}`);
        const out = join(work, `${shape}-${i}.wasm`);
        // Alternate who goes first so neither always gets the warmer cache.
        const order = i % 2 === 0 ? ['skopeo', 'cli'] : ['cli', 'skopeo'];
        for (const who of order) {
          if (who === 'skopeo') {
            skopeo.push(
              timed('skopeo', [
                '--insecure-policy',
                'copy',
                '--quiet',
                '--src-tls-verify=false',
                `docker://${ref}`,
                `dir:${dir}`,
              ]),
            );
          } else {
            cli.push(
              timed(process.execPath, ['bin/wasm-mirror.mjs', 'pull', ref, '-o', out, '--plain-http']),
            );
          }
        }
        rmSync(dir, { recursive: true, force: true });
        rmSync(out, { force: true });
        const r = spawnSync(
          process.execPath,
          ['--import', 'tsx', 'bench/pull.ts', '--child', reg.host, '--child', repository, '--child', out],
          { encoding: 'utf8' },
        );
        if (r.status !== 0) throw new Error(`library pull failed: ${r.stderr}`);
        lib.push(JSON.parse(r.stdout) as { ms: number; maxRssMiB: number });
        rmSync(out, { force: true });
      }
      const s = median(skopeo.map((t) => t.wallMs));
      const c = median(cli.map((t) => t.wallMs));
      const l = median(lib.map((t) => t.ms));
      const rss = Math.max(...cli.map((t) => t.maxRssMiB));
      rows.push(
        [
          shape.padEnd(6),
          `${(bytes.length / MiB).toFixed(1)} MiB`.padStart(10),
          `${s.toFixed(0)} ms`.padStart(9),
          `${c.toFixed(0)} ms`.padStart(9),
          `${(c / s).toFixed(2)}`.padStart(6),
          `${l.toFixed(0)} ms`.padStart(9),
          `${(l / s).toFixed(2)}`.padStart(6),
          `${rss.toFixed(0)} MiB`.padStart(9),
          `${Math.max(...skopeo.map((t) => t.maxRssMiB)).toFixed(0)} MiB`.padStart(9),
        ].join('  '),
      );
    }
  } finally {
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  }
  process.stdout.write(
    `pull of a module from docker-registry on 127.0.0.1, median of ${runs} runs\n` +
      'shape         size     skopeo       cli  ratio    library  ratio   cli RSS  skopeo RSS\n' +
      `${rows.join('\n')}\n` +
      'ratio = wasm-mirror wall time / skopeo wall time (lower is better); cli includes Node + tsx start-up.\n',
  );
}

await main();
