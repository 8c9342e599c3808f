/**
 * The agent's faults, against the real server: a module download that stalls (through a proxy
 * that holds one module's body back), and an agent directory on a full disk. In both the agent
 * keeps its last good set and recovers once the fault is gone.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { mountSmallDisk } from '../../test/adapters/local/fixtures/small-disk.ts';
import { largeWasm, proxyWasmModule } from '../../test/support/wasm.ts';
import { type CaseContext, type CaseResult, rig } from './case.ts';
import { type CliRun, MiB, runCli, type Scope } from './harness.ts';
import { listingOver, type Pushed, pinKeys, push, settle, type Tally, tally } from './listing.ts';

/** Every file the agent's directory offers proxies (modules, manifest.json) with its sha256. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || e.name === 'agent-state.json') continue;
    const path = join(e.parentPath, e.name);
    out[path.slice(dir.length + 1)] = createHash('sha256').update(readFileSync(path)).digest('hex');
  }
  return out;
}

const same = (a: Record<string, string>, b: Record<string, string>) =>
  JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort());

/** The mirror's tally, with a push also lost when its module is not in the agent's directory. */
function withAgent(t: Tally, dir: string, pushed: readonly Pushed[]): Tally & { inDir: number } {
  const files = new Set(readdirSync(join(dir, 'modules', 'sha256')));
  const missing = pushed
    .filter((p) => t.missing.includes(`${p.name}:${p.tag}`) || !files.has(`${p.sha256}.wasm`))
    .map((p) => `${p.name}:${p.tag}`);
  const inDir = pushed.filter((p) => files.has(`${p.sha256}.wasm`)).length;
  return { ...t, lost: missing.length, missing, inDir };
}

/**
 * A proxy in front of the mirror that passes everything through, except the paths in `stalled`:
 * for those it sends the headers and 1,000 bytes of a body of the declared size, then nothing.
 */
async function stallingProxy(scope: Scope, target: string) {
  const stalled = new Map<string, number>();
  const held = new Set<ServerResponse>();
  const server = createServer((req, res) => {
    const size = stalled.get(req.url ?? '');
    if (size !== undefined) {
      res.writeHead(200, { 'content-type': 'application/wasm', 'content-length': size });
      res.write(Buffer.alloc(1000));
      held.add(res);
      return;
    }
    const upstream = request(
      new URL(req.url ?? '/', target),
      { method: req.method, headers: req.headers },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  scope.defer(
    () =>
      new Promise<void>((resolve) => {
        for (const res of held) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, stalled, held };
}

function agentArgs(
  mirrorUrl: string,
  mirrorName: string,
  keysFile: string,
  dir: string,
  extra: string[] = [],
) {
  return [
    'agent',
    ...['--mirror-url', mirrorUrl, '--mirror-name', mirrorName, '--trusted-keys', keysFile, '--dir', dir],
    '--once',
    ...extra,
  ];
}

const tail = (run: CliRun) => run.stderr.trim().split('\n').slice(-2).join(' ').slice(-300);

/**
 * Two modules synced; a third published whose download stalls after 1,000 bytes: the sync fails
 * with TIMEOUT (not a tampering code) within the 2 s stall timeout, the directory is as it was;
 * once the stall is gone the next sync lands all three.
 */
export async function stalledDownload({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, mirrorName } = await rig(scope, 'faults-stall');
  await server.up();
  const keysText = await (await fetch(`${server.url}/keys.json`)).text();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const work = scope.tempDir('agent-stall');
  const keysFile = join(work, 'keys.json');
  writeFileSync(keysFile, keysText);
  const dir = join(work, 'agent');
  const proxy = await stallingProxy(scope, server.url);
  const sync = (extra: string[] = []) => runCli(agentArgs(proxy.url, mirrorName, keysFile, dir, extra));

  const pushed: Pushed[] = [];
  for (let i = 0; i < 2; i++) {
    pushed.push(await push(registry.host, `plugins/stall-${i}:1.0`, largeWasm(200 * 1024 + i)));
  }
  await settle(read, pushed, 20_000);
  const first = await sync();
  const before = snapshot(dir);

  const third = largeWasm(300 * 1024);
  pushed.push(await push(registry.host, 'plugins/stall-2:1.0', third));
  await settle(read, pushed, 20_000);
  proxy.stalled.set(`/modules/sha256/${pushed[2]!.sha256}.wasm`, third.length);
  const stalled = await sync(['--stall-timeout', '2s']);
  const during = snapshot(dir);
  const temps = readdirSync(join(dir, 'modules', 'sha256')).filter((n) => n.startsWith('.tmp'));

  proxy.stalled.clear();
  const recovered = await sync();
  const t = withAgent(tally(pushed, await read()), dir, pushed);
  const inDir = t.inDir;

  check(first.code === 0, `first sync (${tail(first)})`);
  check(
    stalled.code === 1 && /TIMEOUT/.test(stalled.stderr),
    `the stalled sync fails with TIMEOUT (${tail(stalled)})`,
  );
  check(!/LENGTH_MISMATCH|HASH_MISMATCH/.test(stalled.stderr), 'not reported as tampering');
  check(
    stalled.ms < 10_000,
    `within 10 s, not the 30 s socket timeout (${(stalled.ms / 1000).toFixed(1)} s)`,
  );
  check(same(before, during), 'the last good set stays in place');
  check(temps.length === 0, 'no temp file is left');
  check(
    recovered.code === 0 && inDir === pushed.length,
    `the next sync lands all ${pushed.length} (${tail(recovered)})`,
  );
  note(
    `stalled sync ended in ${(stalled.ms / 1000).toFixed(1)} s; agent peak RSS ${(Math.max(first.peakKiB, stalled.peakKiB, recovered.peakKiB) / 1024).toFixed(0)} MiB`,
  );
  server.rssKiB();
  return {
    accepted: await server.accepted(),
    tally: t,
    peakKiB: server.peakKiB,
  };
}

/**
 * The agent's directory on an 8 MiB tmpfs: two modules synced, two of 2 MiB published, the disk
 * filled: the sync fails with STORAGE_FAILURE and the directory is as it was; once space is freed
 * the next sync lands all four.
 */
export async function agentDiskFull({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, mirrorName } = await rig(scope, 'faults-agent-disk');
  const disk = mountSmallDisk(8 * MiB);
  if (disk === undefined) throw new Error('cannot mount a tmpfs here (needs root)');
  scope.defer(() => disk.unmount());
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const work = scope.tempDir('agent-disk');
  const keysFile = join(work, 'keys.json');
  writeFileSync(keysFile, await (await fetch(`${server.url}/keys.json`)).text());
  const dir = join(disk.dir, 'agent');
  const sync = () => runCli(agentArgs(server.url, mirrorName, keysFile, dir));

  const pushed: Pushed[] = [];
  for (let i = 0; i < 2; i++) {
    pushed.push(
      await push(
        registry.host,
        `plugins/adisk-${i}:1.0`,
        proxyWasmModule({ marker: `adisk ${i} ${Date.now()}` }),
      ),
    );
  }
  await settle(read, pushed, 20_000);
  const first = await sync();
  const before = snapshot(dir);

  for (let i = 2; i < 4; i++)
    pushed.push(await push(registry.host, `plugins/adisk-${i}:1.0`, largeWasm(2 * MiB + i)));
  await settle(read, pushed, 20_000);
  disk.fill(64 * 1024);
  const full = await sync();
  const during = snapshot(dir);
  const temps = readdirSync(join(dir, 'modules', 'sha256')).filter((n) => n.startsWith('.tmp'));
  disk.free();
  const recovered = await sync();
  const t = withAgent(tally(pushed, await read()), dir, pushed);
  const inDir = t.inDir;

  check(first.code === 0, `first sync (${tail(first)})`);
  check(
    full.code === 1 && /STORAGE_FAILURE/.test(full.stderr),
    `the sync on a full disk fails with STORAGE_FAILURE (${tail(full)})`,
  );
  check(same(before, during), 'the last good set stays in place');
  check(temps.length === 0, 'no temp file is left');
  check(
    recovered.code === 0 && inDir === pushed.length,
    `after freeing, the next sync lands all ${pushed.length} (${tail(recovered)})`,
  );
  note(`agent peak RSS ${(Math.max(first.peakKiB, full.peakKiB, recovered.peakKiB) / 1024).toFixed(0)} MiB`);
  server.rssKiB();
  return {
    accepted: await server.accepted(),
    tally: t,
    peakKiB: server.peakKiB,
  };
}
