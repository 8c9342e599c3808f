/**
 * The Lambda bundles as `cdk synth` builds them: minified size of each function (goal < 1 MB),
 * cold-start init measured by importing each bundle in a fresh Node process with the environment
 * the stack sets (goal < 300 ms), and the synth time itself. Offline: AWS clients are built but
 * never called at init.
 *
 *   npx tsx bench/aws-bundles.ts [--runs 7]
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

const ROOT = resolve(import.meta.dirname, '..');
const runsArg = process.argv.indexOf('--runs');
const RUNS = runsArg > 0 ? Number(process.argv[runsArg + 1]) : 7;
const SIZE_GOAL = 1_000_000;
const INIT_GOAL_MS = 300;

const out = mkdtempSync(join(tmpdir(), 'wm-synth-'));
try {
  const t0 = performance.now();
  execFileSync(
    'npx',
    ['cdk', 'synth', '--quiet', '--no-notices', '-c', 'config=infra/example.config.yaml', '--output', out],
    {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  const synthMs = performance.now() - t0;

  const template = JSON.parse(
    readFileSync(join(out, 'WasmMirror-prod-mesh-Pipeline.template.json'), 'utf8'),
  ) as {
    Resources: Record<
      string,
      { Type: string; Properties: { Code?: { S3Key?: string }; Description?: string } }
    >;
  };
  const functions = Object.entries(template.Resources)
    // Not CDK's deploy-time SDK-call provider (status page, error document): ours only.
    .filter(([id, r]) => r.Type === 'AWS::Lambda::Function' && !id.startsWith('AWS679f53fac'))
    .map(([id, r]) => ({
      name: id.replace(/Function[0-9A-F]{8}$/, '').toLowerCase(),
      asset: r.Properties.Code!.S3Key!.replace(/\.zip$/, ''),
    }));

  console.log(
    `cdk synth (2 stacks, ${functions.length} esbuild bundles, cdk-nag): ${(synthMs / 1000).toFixed(1)} s`,
  );
  console.log(
    `cold start: median of ${RUNS} fresh \`node\` processes importing the bundle (module init only)\n`,
  );
  console.log('function  minified   gzip      source map  init p50   init max   goals');
  let ok = true;
  for (const f of functions) {
    const dir = join(out, `asset.${f.asset}`);
    const file = join(dir, 'index.mjs');
    const size = statSync(file).size;
    const gz = gzipSync(readFileSync(file)).byteLength;
    const map = statSync(join(dir, 'index.mjs.map')).size;
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(initMs(dir, f.name));
    times.sort((a, b) => a - b);
    const p50 = times[Math.floor(times.length / 2)]!;
    const max = times.at(-1)!;
    const pass = size < SIZE_GOAL && p50 < INIT_GOAL_MS;
    ok &&= pass;
    console.log(
      `${f.name.padEnd(9)} ${kb(size).padEnd(10)} ${kb(gz).padEnd(9)} ${kb(map).padEnd(11)} ${`${p50.toFixed(0)} ms`.padEnd(10)} ${`${max.toFixed(0)} ms`.padEnd(10)} ${pass ? 'met' : 'MISSED'}`,
    );
  }
  console.log(
    `\nnode ${process.version}; goals: < 1 MB (${SIZE_GOAL} bytes) minified, < ${INIT_GOAL_MS} ms init`,
  );
  process.exitCode = ok ? 0 : 1;
} finally {
  rmSync(out, { recursive: true, force: true });
}

function kb(n: number): string {
  return `${(n / 1024).toFixed(0)} KiB`;
}

/** Time from process start to the handler module being evaluated, as Lambda's init phase does it. */
function initMs(dir: string, role: string): number {
  const script = `
    const t = performance.now();
    const m = await import(${JSON.stringify(join(dir, 'index.mjs'))});
    if (typeof m.handler !== 'function') throw new Error('no handler export');
    process.stdout.write(JSON.stringify({ importMs: performance.now() - t, sinceStartMs: performance.now() }));
  `;
  const res = spawnSync(process.execPath, ['--enable-source-maps', '--input-type=module', '-e', script], {
    cwd: dir,
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      LAMBDA_TASK_ROOT: dir,
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench',
      POWERTOOLS_SERVICE_NAME: 'wasm-mirror',
      POWERTOOLS_LOG_LEVEL: 'INFO',
      WASM_MIRROR_BUCKET: 'bench-bucket',
      WASM_MIRROR_MIRROR_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/000000000000/mirror',
      WASM_MIRROR_PUBLISH_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/000000000000/publish.fifo',
      WASM_MIRROR_SIGNING_KEY_ID: 'arn:aws:kms:eu-west-1:000000000000:key/bench',
      WASM_MIRROR_SECRETS_PREFIX: 'wasm-mirror/prod-mesh/',
      // The canary reads only these two.
      WASM_MIRROR_CANARY_URL: 'https://mirror.example.com',
      WASM_MIRROR_MIRROR_NAME: 'prod-mesh',
    },
  });
  if (res.status !== 0) throw new Error(`${role} bundle failed to load: ${res.stderr}`);
  return (JSON.parse(res.stdout) as { importMs: number }).importMs;
}
