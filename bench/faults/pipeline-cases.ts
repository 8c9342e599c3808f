/**
 * Faults in the pipeline's path: a full disk during pulls, a push event that arrives before its
 * tag exists, two `wasm-mirror mirror` commands at once, kill -9 during a burst, a registry that
 * goes away and comes back, and what a crash leaves.
 */
import { existsSync, mkdirSync, readdirSync, utimesSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { mountSmallDisk } from '../../test/adapters/local/fixtures/small-disk.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope } from '../../test/support/mirror.ts';
import { sha256Hex } from '../../test/support/registry.ts';
import { largeWasm, proxyWasmModule } from '../../test/support/wasm.ts';
import { prepareWasmArtifactPush } from '../http-push.ts';
import { type CaseContext, type CaseResult, rig } from './case.ts';
import {
  FlappingRegistry,
  filesUnder,
  MiB,
  MirrorServer,
  metricBy,
  runCli,
  sleep,
  TOKEN,
  until,
} from './harness.ts';
import { listingIn, listingOver, type Pushed, pinKeys, push, settle, tally } from './listing.ts';

const sum = (by: Record<string, number>) => Object.values(by).reduce((a, b) => a + b, 0);

/**
 * The data directory on a 16 MiB tmpfs, filled while the server runs; 6 modules of 600 KiB
 * pushed: every pull fails for want of space until it is freed, then every module is listed.
 */
export async function diskFullDuringPulls({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const disk = mountSmallDisk(16 * MiB);
  if (disk === undefined) throw new Error('cannot mount a tmpfs here (needs root)');
  scope.defer(() => disk.unmount());
  const { registry, server, mirrorName } = await rig(scope, 'faults-disk-full', {
    dataDir: join(disk.dir, 'data'),
  });
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  await until('the first manifest', read, 20_000);
  // Room for queue messages and notes (a few KiB each), none for a 600 KiB module.
  disk.fill(256 * 1024);

  const pushed: Pushed[] = [];
  for (let i = 0; i < 6; i++) {
    pushed.push(await push(registry.host, `plugins/full-${i}:1.0`, largeWasm(600 * 1024)));
  }
  const whileFull = await until(
    'every job to meet the full disk',
    async () => {
      const by = metricBy(await server.metrics(), 'wasm_mirror_mirror_results_total', 'reason');
      return sum(by) >= pushed.length ? by : undefined;
    },
    30_000,
  );
  const listedWhileFull = tally(pushed, await read()).listed;
  disk.free();
  const t = await settle(read, pushed, 45_000);
  const status = (await (await fetch(`${server.url}/status`)).json()) as {
    queues: { mirror: { dead: number } };
  };

  check(listedWhileFull === 0, 'nothing listed while the disk was full');
  check((whileFull.STORAGE_FAILURE ?? 0) >= 1, 'pulls on the full disk fail as STORAGE_FAILURE');
  check((whileFull.INTERNAL ?? 0) === 0, 'no pull ends as a permanent INTERNAL');
  check(status.queues.mirror.dead === 0, 'no dead letters');
  note(
    `results while full ${JSON.stringify(whileFull)}; all listed ${(t.ms / 1000).toFixed(1)} s after freeing`,
  );
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/**
 * A CNCF Distribution registry sends a manifest push's event before it writes the tag
 * (distribution/distribution#2625: the notification fires in the manifest store's Put, the tag
 * is written after it returns). Against a fast data directory the mirror can ask for the tag in
 * between. Here that order is made wide and certain, 5 times: the manifest is put by digest, the
 * event the registry would send (tag and digest) is delivered, and the tag follows 300 ms later.
 * Every push must end up listed.
 */
export async function eventBeforeTag({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const registry = await FlappingRegistry.start(scope);
  const mirrorName = 'faults-tag-order';
  const server = await MirrorServer.create(scope, {
    dataDir: join(scope.tempDir('tag-order'), 'data'),
    config: [
      `mirror: { name: ${mirrorName} }`,
      'sources:',
      `  - { id: local, type: distribution, registry: "${registry.host}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }`,
      '',
    ].join('\n'),
    env: { HOOK_TOKEN: TOKEN },
  });
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const pushed: Pushed[] = [];
  const statuses: number[] = [];
  for (let i = 0; i < 5; i++) {
    const repo = `plugins/order-${i}`;
    const bytes = proxyWasmModule({ marker: `tag order ${i} ${Date.now()}` });
    const byTag = await prepareWasmArtifactPush(registry.url, repo, '1.0', bytes);
    await (await prepareWasmArtifactPush(registry.url, repo, byTag.digest, bytes)).putManifest();
    const res = await fetch(`${server.url}/hooks/local`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: distributionEnvelope([
        { repository: repo, tag: '1.0', digest: byTag.digest, host: registry.host },
      ]),
    });
    await res.arrayBuffer();
    statuses.push(res.status);
    await sleep(300);
    await byTag.putManifest();
    pushed.push({
      name: `${registry.host}/${repo}`,
      tag: '1.0',
      digest: byTag.digest,
      sha256: sha256Hex(bytes),
    });
  }
  const t = await settle(read, pushed, 15_000);
  const results = metricBy(await server.metrics(), 'wasm_mirror_mirror_results_total', 'reason');
  check(
    statuses.every((s) => s === 202),
    `every event accepted (${statuses.join(',')})`,
  );
  check((results.MANIFEST_UNKNOWN ?? 0) >= 1, 'jobs met the tag before it existed (MANIFEST_UNKNOWN)');
  note(
    `mirror results ${JSON.stringify(results)}; all listed ${(t.ms / 1000).toFixed(1)} s after the last tag`,
  );
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/** Two streams of `wasm-mirror mirror`, three commands each, at once on one data directory, no server. */
export async function concurrentMirrorCommands({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const registry = await FlappingRegistry.start(scope);
  const work = scope.tempDir('cli');
  const data = join(work, 'data');
  const pushed: Pushed[] = [];
  for (let i = 0; i < 6; i++) {
    pushed.push(
      await push(
        registry.host,
        `plugins/cli-${i}:1.0`,
        proxyWasmModule({ marker: `faults cli ${i} ${Date.now()}` }),
      ),
    );
  }
  const streams = await Promise.all(
    [0, 1].map(async (stream) => {
      const runs = [];
      for (let k = 0; k < 3; k++) {
        const ref = `${registry.host}/plugins/cli-${stream * 3 + k}:1.0`;
        runs.push(
          await runCli(['mirror', ref, '--plain-http', '--data', data, '--json'], {
            cwd: work,
            timeoutMs: 30_000,
          }),
        );
      }
      return runs;
    }),
  );
  const runs = streams.flat();
  const reported = runs.filter((r) => r.code === 0 && /"status":"mirrored"/.test(r.stdout));
  const t = tally(pushed, await listingIn(data, 'local-mirror')());
  const byWhom = runs.map((r) => /"publishedBy":"([^"]+)"/.exec(r.stdout)?.[1] ?? `exit ${r.code}`);

  check(
    runs.every((r) => r.code === 0),
    `every command exits 0 (${runs.map((r) => r.code).join(',')}) ${runs.map((r) => r.stderr.trim()).join(' ')}`,
  );
  note(
    `published by: ${[...new Set(byWhom)].join(', ')}; slowest command ${Math.max(...runs.map((r) => r.ms)).toFixed(0)} ms`,
  );
  return {
    accepted: `${reported.length} cmds`,
    tally: t,
    peakKiB: Math.max(...runs.map((r) => r.peakKiB)),
    rssOf: 'cli',
  };
}

/** 8 pushes (half 3 MiB) while the server is killed with SIGKILL five times and restarted. */
export async function killDuringBurst({ scope, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, mirrorName } = await rig(scope, 'faults-crash');
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const pushed: Pushed[] = [];
  const pushes = (async () => {
    for (let i = 0; i < 8; i++) {
      const bytes = i % 2 === 0 ? largeWasm(3 * MiB + i) : proxyWasmModule({ marker: `faults crash ${i}` });
      pushed.push(
        await push(
          registry.host,
          `plugins/crash-${i}:1.0`,
          bytes,
          i % 3 === 0 ? 'compat-oci' : 'wasm-artifact',
        ),
      );
    }
  })();
  // Kills at varied moments while pushes, pulls and publishes are under way.
  for (const delay of [300, 700, 450, 900, 250]) {
    await sleep(delay);
    await server.kill9();
    await server.up();
  }
  await pushes;
  const t = await settle(read, pushed, 90_000);
  note(`5 kills, ${server.starts} starts; all listed ${(t.ms / 1000).toFixed(1)} s after the last push`);
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/**
 * 8 pushes of 8 MiB; after each, as soon as the mirror has claimed its job, the registry is killed
 * (SIGKILL) for 1.5 s and started again on the same port and storage: the job's tag checks and
 * pull meet the outage, and pushes made while it lasts are retried by the pusher. A reconcile
 * every 10 s names the repositories: the product's answer to a notification a dying registry
 * never sent (it keeps them in memory only).
 */
export async function registryFlapping({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const repos = Array.from({ length: 8 }, (_, i) => `plugins/flap-${i}`);
  const { registry, server, dataDir, mirrorName } = await rig(scope, 'faults-flapping', {
    source: `repositories: [${repos.map((r) => `"${r}"`).join(', ')}], reconcileInterval: 10s`,
  });
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const inflight = join(dataDir, 'queues', 'mirror', 'inflight');
  const pushed: Pushed[] = [];
  let outages = 0;
  let missed = 0;
  for (const [i, repo] of repos.entries()) {
    pushed.push(await push(registry.host, `${repo}:1.0`, largeWasm(8 * MiB + i), 'wasm-artifact', 30_000));
    const claimed = await until(
      'the job to be claimed',
      () => (readdirSync(inflight).length > 0 ? true : undefined),
      5_000,
      2,
    ).catch(() => false);
    if (!claimed) missed++;
    await registry.stop('SIGKILL');
    outages++;
    await sleep(1_500);
    await registry.start();
  }
  const t = await settle(read, pushed, 90_000);
  const metrics = await server.metrics();
  const results = metricBy(metrics, 'wasm_mirror_mirror_results_total', 'reason');
  const reconciled = sum(metricBy(metrics, 'wasm_mirror_reconcile_jobs_total', 'source'));
  check(
    (results.REGISTRY_UNAVAILABLE ?? 0) >= 1,
    'the outages hit the mirror (REGISTRY_UNAVAILABLE, retried)',
  );
  note(
    `${outages} outages (${missed} without a claimed job); mirror results ${JSON.stringify(results)}; reconcile queued ${reconciled}; all listed ${(t.ms / 1000).toFixed(1)} s after the last restart`,
  );
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/**
 * A kill -9 during pulls of 12 MiB modules leaves staged files; time passes (they are aged past
 * the 15-minute grace, with the usual others a crash leaves planted beside them); the restarted
 * server removes them at start and lists every push; an agent's temp files from a killed sync go
 * at its next start.
 */
export async function crashLeftovers({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, dataDir, mirrorName } = await rig(scope, 'faults-leftovers');
  await server.up();
  const keys = await pinKeys(server.url);
  const read = listingOver(server.url, keys, mirrorName);
  const staged = () => filesUnder(join(dataDir, 'tmp'), (n) => /^\.?pull-/.test(n));
  const pushed: Pushed[] = [];
  const pushes = (async () => {
    for (let i = 0; i < 4; i++)
      pushed.push(await push(registry.host, `plugins/left-${i}:1.0`, largeWasm(12 * MiB + i)));
  })();
  const caught = await until(
    'a pull under way',
    () => (staged().length > 0 ? true : undefined),
    30_000,
    5,
  ).catch(() => false);
  await server.kill9();
  await pushes;

  const leftovers = [
    ...staged().map((f) => join(dataDir, 'tmp', f)),
    ...filesUnder(dataDir, (n) => n.startsWith('.wm-tmp-') || n.startsWith('.tmp-'))
      .filter((f) => !f.startsWith('queues/'))
      .map((f) => join(dataDir, f)),
  ];
  const crashed = leftovers.length;
  const plant = (relative: string) => {
    const path = join(dataDir, relative);
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, Buffer.alloc(4096));
    return path;
  };
  leftovers.push(
    plant('tmp/pull-0f1e2d.wasm'),
    plant('tmp/.pull-0f1e2d.wasm.0a1b2c3d4e5f.tmp'),
    plant('modules/sha256/.wm-tmp-99999-0011223344556677'),
  );
  const hourAgo = new Date(Date.now() - 3600_000);
  for (const f of leftovers) utimesSync(f, hourAgo, hourAgo);
  // Fresh: it may belong to a process writing it now.
  const young = plant('tmp/pull-young.wasm');

  await server.up();
  const gone = leftovers.filter((f) => !existsSync(f)).length;
  const t = await settle(read, pushed, 60_000);

  // The agent: temp files a killed sync left, removed when the next one starts.
  const agentDir = join(scope.tempDir('agent'), 'agent');
  const keysFile = join(dirname(agentDir), 'keys.json');
  writeFileSync(keysFile, await (await fetch(`${server.url}/keys.json`)).text());
  mkdirSync(join(agentDir, 'modules', 'sha256'), { recursive: true });
  const agentTemps = [
    join(agentDir, 'modules', 'sha256', `.tmp-${'e'.repeat(64)}-0a1b2c3d`),
    join(agentDir, '.tmp-manifest.json-0a1b2c3d'),
  ];
  for (const f of agentTemps) writeFileSync(f, 'partial');
  const agent = await runCli([
    'agent',
    ...['--mirror-url', server.url, '--mirror-name', mirrorName, '--trusted-keys', keysFile],
    ...['--dir', agentDir, '--once'],
  ]);

  check(caught !== false, 'a pull was under way when the server was killed');
  check(gone === leftovers.length, `every leftover removed at start (${gone} of ${leftovers.length})`);
  check(existsSync(young), 'a fresh staged file is left alone');
  check(agent.code === 0, `the agent syncs (${agent.stderr.trim().slice(-300)})`);
  check(
    agentTemps.every((f) => !existsSync(f)),
    "the agent removes a killed sync's temp files",
  );
  check(
    filesUnder(join(agentDir, 'modules', 'sha256'), (n) => n.endsWith('.wasm')).length === pushed.length,
    'the agent holds every module',
  );
  note(`${crashed} left by the kill, ${leftovers.length - crashed} planted; all swept at start`);
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}
