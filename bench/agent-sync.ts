/**
 * Agent sync figures (run: `npx tsx bench/agent-sync.ts`):
 *  1. first sync of a manifest listing 1,000 modules (all downloads: verified, hashed, fsynced,
 *     renamed into place) against `curl --parallel --parallel-max N` fetching the same files
 *     with the same parallelism into a directory, as a ratio, in one run (median of rounds);
 *  2. a resync with nothing changed: requests made and time.
 * The mirror is a static node:http server in a child process, so both clients face the same
 * server and neither shares its event loop.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyPairPem, LocalKeySigner } from '../shared/adapters/local/signer.ts';
import { WasmMirrorAgent } from '../shared/agent/index.ts';
import type { ManifestModule } from '../shared/core/domain.ts';
import { buildPayload, signManifest, trustedKeyFrom } from '../shared/core/manifest/index.ts';

const MODULES = Number(process.env.BENCH_MODULES ?? 1000);
const PARALLEL = Number(process.env.BENCH_PARALLEL ?? 8);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
/** Module sizes cycle through these (bytes); real proxy-wasm filters are tens of KiB to a few MiB. */
const SIZES = [16 * 1024, 64 * 1024, 128 * 1024, 256 * 1024];

const SERVER = `
const http = require('node:http'), fs = require('node:fs'), path = require('node:path'), crypto = require('node:crypto');
const root = process.argv[1];
const server = http.createServer((req, res) => {
  const file = path.join(root, path.normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)));
  if (!file.startsWith(root)) { res.writeHead(403).end(); return; }
  fs.readFile(file, (err, body) => {
    if (err) { res.writeHead(404).end(); return; }
    const etag = '"' + crypto.createHash('sha256').update(body).digest('hex') + '"';
    if (req.headers['if-none-match'] === etag) { res.writeHead(304, { etag }).end(); return; }
    res.writeHead(200, { 'content-length': body.length, etag }).end(body);
  });
});
server.keepAliveTimeout = 10000;
server.listen(0, '127.0.0.1', () => process.stdout.write(String(server.address().port) + '\\n'));
`;

const run = promisify(execFile);

/** Writes back dirty pages so one client's output does not slow the other's flushes. */
function flushDisk(): void {
  try {
    execFileSync('sync');
  } catch {
    // no sync(1): carry on, the alternating order still evens things out
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function startServer(root: string): Promise<{ child: ChildProcess; url: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', SERVER, root], { stdio: ['ignore', 'pipe', 'inherit'] });
    child.once('error', reject);
    child.stdout!.once('data', (d: Buffer) =>
      resolve({ child, url: `http://127.0.0.1:${d.toString().trim()}` }),
    );
  });
}

async function main() {
  const work = mkdtempSync(join(tmpdir(), 'wm-bench-agent-'));
  const root = join(work, 'mirror');
  mkdirSync(join(root, 'modules/sha256'), { recursive: true });
  mkdirSync(join(root, 'manifests'), { recursive: true });
  const modules: ManifestModule[] = [];
  let totalBytes = 0;
  for (let i = 0; i < MODULES; i++) {
    const size = SIZES[i % SIZES.length]!;
    const bytes = Buffer.alloc(size);
    Buffer.from([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]).copy(bytes);
    bytes.writeUInt32BE(i, 8); // distinct content, distinct hash
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(root, 'modules/sha256', `${sha256}.wasm`), bytes);
    totalBytes += size;
    modules.push({
      name: `ghcr.io/bench/plugin-${String(i).padStart(4, '0')}`,
      tag: '1.0.0',
      ociDigest: `sha256:${createHash('sha256').update(`oci${i}`).digest('hex')}`,
      sha256,
      size,
      format: 'wasm-artifact',
      mirroredAt: new Date().toISOString(),
    });
  }
  const signer = new LocalKeySigner(generateKeyPairPem().privateKeyPem);
  const payload = buildPayload({ mirror: 'bench', version: 1, modules });
  const { bytes } = await signManifest(payload, signer);
  writeFileSync(join(root, 'manifests/latest.json'), bytes);
  const trustedKeys = [trustedKeyFrom(await signer.publicKeySpki())];

  const { child, url } = await startServer(root);
  const curlTimes: number[] = [];
  const curlCheckedTimes: number[] = [];
  const agentTimes: number[] = [];
  const resyncTimes: number[] = [];
  const resyncRequests: number[] = [];
  let allNotModified = true;
  try {
    const runCurl = async (round: number) => {
      // curl: same files, same parallelism, straight to disk (no hashing, no fsync).
      const curlDir = join(work, `curl-${round}`);
      mkdirSync(curlDir);
      const lines = modules.map(
        (m) =>
          `url = "${url}/modules/sha256/${m.sha256}.wasm"\noutput = "${join(curlDir, `${m.sha256}.wasm`)}"`,
      );
      writeFileSync(join(work, 'curl.cfg'), `${lines.join('\n')}\n`);
      const args = [
        '-sS',
        '--fail',
        '--parallel',
        '--parallel-max',
        String(PARALLEL),
        '-K',
        join(work, 'curl.cfg'),
      ];
      flushDisk();
      const t = performance.now();
      await run('curl', args, { maxBuffer: 1 << 20 });
      curlTimes.push(performance.now() - t);
      // The same guarantees by hand: check every sha256, then flush to disk.
      const sums = modules.map((m) => `${m.sha256}  ${join(curlDir, `${m.sha256}.wasm`)}`).join('\n');
      writeFileSync(join(work, 'sums.txt'), `${sums}\n`);
      await run('sha256sum', ['--quiet', '-c', join(work, 'sums.txt')]);
      execFileSync('sync');
      curlCheckedTimes.push(performance.now() - t);
      rmSync(curlDir, { recursive: true, force: true });
    };
    const runAgent = async (round: number) => {
      // agent: GET latest.json, verify, download, hash, fsync, rename, write manifest.json, GC pass.
      const agentDir = join(work, `agent-${round}`);
      const agent = new WasmMirrorAgent({
        mirrorUrl: url,
        mirrorName: 'bench',
        trustedKeys,
        dir: agentDir,
        concurrency: PARALLEL,
      });
      flushDisk();
      let t = performance.now();
      const first = await agent.syncOnce();
      agentTimes.push(performance.now() - t);
      if (first.downloaded !== MODULES) throw new Error(`agent downloaded ${first.downloaded} of ${MODULES}`);
      t = performance.now();
      const again = await agent.syncOnce();
      resyncTimes.push(performance.now() - t);
      resyncRequests.push(again.requests);
      allNotModified &&= again.notModified && again.downloaded === 0;
      agent.close();
      rmSync(agentDir, { recursive: true, force: true });
    };
    // Alternate which goes first, and start each from a clean page cache writeback state.
    for (let round = 0; round < ROUNDS; round++) {
      if (round % 2 === 0) {
        await runCurl(round);
        await runAgent(round);
      } else {
        await runAgent(round);
        await runCurl(round);
      }
    }
  } finally {
    child.kill();
    rmSync(work, { recursive: true, force: true });
  }
  const curlMs = median(curlTimes);
  const agentMs = median(agentTimes);
  const mib = totalBytes / 1024 / 1024;
  const lines = [
    `agent first sync: ${MODULES} modules, ${mib.toFixed(1)} MiB, parallelism ${PARALLEL}, median of ${ROUNDS} rounds`,
    `  curl --parallel --parallel-max ${PARALLEL}: ${curlMs.toFixed(0)} ms  (rounds: ${curlTimes.map((x) => x.toFixed(0)).join(', ')})`,
    `  wasm-mirror agent:                 ${agentMs.toFixed(0)} ms  (rounds: ${agentTimes.map((x) => x.toFixed(0)).join(', ')})`,
    `  curl + sha256sum -c + sync (same checks and durability): ${median(curlCheckedTimes).toFixed(0)} ms`,
    `  ratio agent/curl: ${(agentMs / curlMs).toFixed(2)}  (goal <= 1.00; the agent also verifies the manifest, hashes and fsyncs every file)`,
    `  ratio agent/(curl + sha256sum + sync): ${(agentMs / median(curlCheckedTimes)).toFixed(2)}`,
    `agent resync, nothing changed: ${Math.max(...resyncRequests)} request(s) each, ${allNotModified ? '304 Not Modified' : 'NOT all 304'}, median ${median(resyncTimes).toFixed(1)} ms, max ${Math.max(...resyncTimes).toFixed(1)} ms (goal < 50 ms, 1 request)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
