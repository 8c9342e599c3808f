#!/usr/bin/env node
// `npm run bench [-- <name> [args…]]`: lists the benchmarks in bench/ and runs them, or the one
// named, each in its own Node process under tsx. A benchmark is a bench/*.ts file that exports
// nothing; a file with exports (bench/http-push.ts) is a helper the benchmarks import.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const benchDir = join(root, 'bench');

/** The benchmarks: bench/*.ts files without exports, by name. */
export function listBenchmarks(dir = benchDir) {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !/^export\s/m.test(readFileSync(join(dir, f), 'utf8')))
    .sort()
    .map((f) => ({ name: basename(f, '.ts'), file: join(dir, f) }));
}

const USAGE = `usage: npm run bench [-- <name> [args…]]     (or: node bin/run-bench.mjs …)

  npm run bench                   run every benchmark, one after another
  npm run bench -- <name> [args]  run one, passing it the rest of the arguments
  npm run bench -- --list         list the benchmarks

Figures and what each compares: bench/README.md.
`;

function main(argv) {
  const benches = listBenchmarks();
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h') {
    process.stdout.write(USAGE);
    return 0;
  }
  const width = Math.max(...benches.map((b) => b.name.length));
  const listing = benches.map((b) => `  ${b.name.padEnd(width)}  bench/${b.name}.ts`).join('\n');
  if (first === '--list') {
    process.stdout.write(`${listing}\n`);
    return 0;
  }
  let selected = benches;
  if (first !== undefined) {
    const wanted = first.replace(/^bench\//, '').replace(/\.ts$/, '');
    const bench = benches.find((b) => b.name === wanted);
    if (bench === undefined) {
      process.stderr.write(`no benchmark '${first}'; the benchmarks are:\n${listing}\n`);
      return 2;
    }
    selected = [bench];
  } else {
    process.stdout.write(`benchmarks:\n${listing}\n`);
  }

  // The pull benchmark times the CLI as users run it: from the bundle.
  spawnSync(process.execPath, [join(root, 'bin/build.mjs'), '--if-stale'], { cwd: root, stdio: 'inherit' });
  const failed = [];
  for (const bench of selected) {
    process.stdout.write(
      `\n== ${bench.name} (bench/${bench.name}.ts${rest.length ? ` ${rest.join(' ')}` : ''})\n`,
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', bench.file, ...rest], {
      cwd: root,
      stdio: 'inherit',
    });
    if (r.status !== 0) failed.push(`${bench.name} (${r.signal ?? `exit ${r.status}`})`);
  }
  if (failed.length > 0) {
    process.stderr.write(`\nfailed: ${failed.join(', ')}\n`);
    return 1;
  }
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = main(process.argv.slice(2));
