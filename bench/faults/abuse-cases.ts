/**
 * Abuse that once cost memory or starved real pushes, and answers that were wrong: deliveries of
 * thousands of events, hundreds of unauthenticated slow bodies, /status over tens of thousands of
 * dead letters, malformed request targets. Every flood is bounded in count and time.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { deadName, nextSeq } from '../../shared/adapters/local/disk-queue/layout.ts';
import { DISTRIBUTION_EVENTS_V1 } from '../../test/support/mirror.ts';
import { proxyWasmModule } from '../../test/support/wasm.ts';
import { type CaseContext, type CaseResult, NOTHING, rig } from './case.ts';
import { MiB, MirrorServer, metricBy, metricSum, runCli, sleep, TOKEN } from './harness.ts';
import { listingOver, pinKeys, push, settle } from './listing.ts';

/** A compact Distribution envelope of `count` manifest pushes of one repository, each its own tag. */
function manyPushes(count: number, batch: string, registryHost: string): string {
  const digest = `sha256:${'f'.repeat(64)}`;
  const events = Array.from({ length: count }, (_, i) => ({
    id: `${batch}-${i}`,
    action: 'push',
    target: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      repository: 'plugins/flood',
      tag: `t${i}`,
      digest,
    },
    request: { host: registryHost },
  }));
  return JSON.stringify({ events });
}

/**
 * The flood the issue measured (20 authenticated deliveries of 3,000 events), then a genuine push:
 * each delivery is capped at 100 jobs, the source's job budget refuses the rest with 429, and the
 * genuine push is listed within seconds.
 */
export async function eventFlood({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, mirrorName } = await rig(scope, 'faults-event-flood');
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const statuses: Record<number, number> = {};
  let queued = 0;
  let first: { code?: string; accepted?: number; dropped?: number } = {};
  const started = performance.now();
  for (let d = 0; d < 20; d++) {
    const res = await fetch(`${server.url}/hooks/local`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: manyPushes(3000, `flood-${d}-${Date.now()}`, registry.host),
    });
    const body = (await res.json()) as { code?: string; accepted?: number; dropped?: number };
    statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    if (d === 0) first = body;
    queued += body.accepted ?? 0;
  }
  const floodMs = performance.now() - started;
  const genuine = await push(
    registry.host,
    'plugins/genuine:1.0',
    proxyWasmModule({ marker: `genuine ${Date.now()}` }),
  );
  const t = await settle(read, [genuine], 60_000);

  check(
    first.code === 'WEBHOOK_EVENTS_CAPPED' && first.accepted === 100 && first.dropped === 2900,
    `one delivery queues at most 100 jobs and says so (${JSON.stringify(first)})`,
  );
  check((statuses[429] ?? 0) > 0, 'deliveries past the job budget are refused with 429');
  check(queued <= 1000, `the flood queued ${queued} jobs, not 60,000`);
  check(t.ms < 20_000, `the genuine push is listed within 20 s (${(t.ms / 1000).toFixed(1)} s)`);
  note(
    `20 x 3,000 events answered in ${(floodMs / 1000).toFixed(1)} s, statuses ${JSON.stringify(statuses)}, ${queued} jobs queued; genuine push listed in ${(t.ms / 1000).toFixed(1)} s`,
  );
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/**
 * One slow upload: a declared 1 MiB body sent in 64 KiB steps, the last one held back until
 * `until`, so a server that buffered bodies would hold it meanwhile. Resolves with the status
 * line's code, or 0 when the server closed without answering.
 */
function slowUpload(
  port: number,
  path: string,
  headers: string,
  until: number,
  chunk: Buffer,
): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let sent = 0;
    let status = 0;
    let timer: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(status);
    };
    socket.on('error', finish);
    socket.on('close', finish);
    socket.on('data', (d: Buffer) => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(d.toString('latin1'));
      if (m !== null && status === 0) status = Number(m[1]);
    });
    socket.once('connect', () => {
      socket.write(`POST ${path} HTTP/1.1\r\nhost: mirror\r\ncontent-length: ${MiB}\r\n${headers}\r\n`);
      const step = () => {
        if (socket.destroyed) return finish();
        if (sent + chunk.length >= MiB || Date.now() > until) {
          timer = setTimeout(finish, Math.max(0, until - Date.now()));
          return;
        }
        sent += chunk.length;
        if (socket.write(chunk)) timer = setTimeout(step, 20);
        else socket.once('drain', () => (timer = setTimeout(step, 20)));
      };
      step();
    });
  });
}

/**
 * 500 unauthenticated sockets each uploading 1 MiB slowly for 6 s (a wrong bearer token on the
 * registry's source; a forged HMAC on a GitHub source, whose proof is in the body), while a
 * genuine push arrives: the server's RSS stays bounded and the push is listed.
 */
export async function slowBodyFlood({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, mirrorName } = await rig(scope, 'faults-slow-bodies', {
    extraSources:
      '  - { id: gh, type: github, registry: "ghcr.io", repositories: ["acme/**"], webhookSecretEnv: HOOK_TOKEN }\n',
  });
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  // One push end to end first: the baseline then includes what any pull and publish costs.
  const warm = await push(
    registry.host,
    'plugins/warm:1.0',
    proxyWasmModule({ marker: `warm ${Date.now()}` }),
  );
  await settle(read, [warm], 20_000);
  await server.metrics();
  const beforeKiB = server.rssKiB();
  const port = Number(new URL(server.url).port);
  const until = Date.now() + 6_000;
  const chunk = Buffer.alloc(64 * 1024, 0x20);
  const forged = `sha256=${'0'.repeat(64)}`;
  const flood = Promise.all(
    Array.from({ length: 500 }, (_, i) =>
      i % 3 === 2
        ? slowUpload(
            port,
            '/hooks/gh',
            `x-hub-signature-256: ${forged}\r\nx-github-event: registry_package\r\n`,
            until,
            chunk,
          )
        : slowUpload(port, '/hooks/local', 'authorization: Bearer not-the-token\r\n', until, chunk),
    ),
  );
  await sleep(1_000);
  const genuine = await push(
    registry.host,
    'plugins/genuine:1.0',
    proxyWasmModule({ marker: `slow ${Date.now()}` }),
  );
  const t = await settle(read, [warm, genuine], 30_000);
  const answered = await flood;
  await sleep(1_000);
  const afterKiB = server.rssKiB();
  const metrics = await server.metrics();
  const statuses: Record<number, number> = {};
  for (const s of answered) statuses[s] = (statuses[s] ?? 0) + 1;
  const growthMiB = (server.peakKiB - beforeKiB) / 1024;
  const keptMiB = (afterKiB - beforeKiB) / 1024;

  check(t.lost === 0, 'the genuine push arriving during the flood is listed');
  check(
    growthMiB < 100,
    `peak RSS grows less than 100 MiB (${growthMiB.toFixed(0)} MiB; 500 bodies held would be 500)`,
  );
  check(keptMiB < 100, `RSS after the flood within 100 MiB of before (${keptMiB.toFixed(0)} MiB)`);
  note(
    `RSS before ${(beforeKiB / 1024).toFixed(0)} MiB, after ${(afterKiB / 1024).toFixed(0)} MiB; client saw ${JSON.stringify(statuses)} (0: no answer read before the socket closed); server counted deliveries ${JSON.stringify(metricBy(metrics, 'wasm_mirror_webhooks_total', 'outcome'))}, refused unread ${JSON.stringify(metricBy(metrics, 'wasm_mirror_http_requests_refused_total', 'reason'))}; genuine listed in ${(t.ms / 1000).toFixed(1)} s`,
  );
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/** Dead letters as a long-failing source leaves them, written in the queue's layout (no 50,000 fsyncs). */
async function writeDeadLetters(dataDir: string, count: number): Promise<void> {
  const dir = join(dataDir, 'queues', 'mirror', 'dead');
  await mkdir(dir, { recursive: true });
  const now = Date.now();
  for (let i = 0; i < count; i += 1000) {
    await Promise.all(
      Array.from({ length: Math.min(1000, count - i) }, (_, j) => {
        const seq = nextSeq(now);
        const at = new Date(now).toISOString();
        const dead = {
          messageId: seq,
          body: {
            sourceId: 'gone',
            registry: 'registry.example',
            repository: `plugins/dead-${i + j}`,
            tag: '1.0',
            receivedAt: at,
          },
          attempts: 8,
          sentAt: at,
          deadAt: at,
          lastError: { code: 'REGISTRY_UNAVAILABLE', message: 'connect ECONNREFUSED registry.example:443' },
        };
        return writeFile(join(dir, deadName(seq)), JSON.stringify(dead));
      }),
    );
  }
}

async function timedGet(url: string): Promise<{ ms: number; bytes: number; status: number; text: string }> {
  const started = performance.now();
  const res = await fetch(url);
  const text = await res.text();
  return { ms: performance.now() - started, bytes: Buffer.byteLength(text), status: res.status, text };
}

/** /status, ten at once, a page of dead letters and the CLI's list, over 50,000 dead letters. */
export async function statusWithDeadLetters({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const count = Number(process.env.FAULTS_DEAD_LETTERS ?? 50_000);
  const dataDir = join(scope.tempDir('dead-letters'), 'data');
  const filled = performance.now();
  await writeDeadLetters(dataDir, count);
  const fillMs = performance.now() - filled;
  const server = await MirrorServer.create(scope, {
    dataDir,
    config: 'mirror: { name: faults-dead-letters }\n',
  });
  await server.up();
  const beforeKiB = server.rssKiB();

  const one = await timedGet(`${server.url}/status`);
  const ten = await Promise.all(Array.from({ length: 10 }, () => timedGet(`${server.url}/status`)));
  const page = await timedGet(`${server.url}/status/dead-letters?queue=mirror&limit=1000`);
  server.rssKiB();
  const cli = await runCli(['dead-letters', 'list', '--data', dataDir, '--limit', '5', '--json']);
  const body = JSON.parse(one.text) as { deadLetters: unknown[]; deadLettersPage: { total: number } };
  const tenMs = Math.max(...ten.map((r) => r.ms));
  const growthMiB = (server.peakKiB - beforeKiB) / 1024;

  check(body.deadLettersPage.total === count, `/status counts ${count} dead letters`);
  check(one.ms < 2_000, `/status answers within 2 s (${one.ms.toFixed(0)} ms; was 10.5 s)`);
  check(one.bytes < 256 * 1024, `/status is under 256 KiB (${(one.bytes / 1024).toFixed(1)} KiB)`);
  check(
    tenMs < 10_000 && ten.every((r) => r.status === 200),
    `ten at once answer within 10 s (${tenMs.toFixed(0)} ms)`,
  );
  check(page.status === 200 && page.ms < 5_000, `a page of 1,000 in ${page.ms.toFixed(0)} ms`);
  // Absolute: how much the start-up's own pass over the dead letters adds varies with timing.
  check(
    server.peakKiB < 320 * 1024,
    `peak RSS under 320 MiB (${(server.peakKiB / 1024).toFixed(0)} MiB; ten at once took it to 860 MB before)`,
  );
  check(
    cli.code === 0,
    `wasm-mirror dead-letters list works beside the server (${cli.stderr.trim().slice(-200)})`,
  );
  note(
    `${count} written in ${(fillMs / 1000).toFixed(1)} s; RSS ${(beforeKiB / 1024).toFixed(0)} MiB at start, peak +${growthMiB.toFixed(0)} MiB; /status ${one.ms.toFixed(0)} ms ${(one.bytes / 1024).toFixed(1)} KiB, 10 at once ${tenMs.toFixed(0)} ms; page of 1,000 ${page.ms.toFixed(0)} ms ${(page.bytes / 1024).toFixed(0)} KiB; CLI list ${cli.ms.toFixed(0)} ms`,
  );
  return { accepted: 0, tally: NOTHING, peakKiB: server.peakKiB };
}

/** One raw request; the status code of the answer, 0 if the connection closed without one. */
function rawRequest(port: number, target: string): Promise<number> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let head = '';
    const timer = setTimeout(() => socket.destroy(), 5_000);
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
    });
    const done = () => {
      clearTimeout(timer);
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0));
    };
    socket.on('close', done);
    socket.on('error', () => {});
    socket.once('connect', () =>
      socket.write(`GET ${target} HTTP/1.1\r\nhost: mirror\r\nconnection: close\r\n\r\n`),
    );
  });
}

/** Request targets URL parsing chokes on or would take for an authority: each a 400, no error logged. */
export async function malformedTargets({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const dataDir = join(scope.tempDir('targets'), 'data');
  const server = await MirrorServer.create(scope, { dataDir, config: 'mirror: { name: faults-targets }\n' });
  await server.up();
  const port = Number(new URL(server.url).port);
  const targets = ['//[', '//@/healthz', '//[::1', '//a:b@c/keys.json', 'http://[/healthz', '//%5B/status'];
  const answers: Record<string, number> = {};
  for (const target of targets) answers[target] = await rawRequest(port, target);
  const health = await fetch(`${server.url}/healthz`);
  await health.arrayBuffer();
  const refused = metricSum(await server.metrics(), 'wasm_mirror_http_requests_refused_total', {
    reason: 'bad-target',
  });

  for (const target of targets) check(answers[target] === 400, `${target} answers 400 (${answers[target]})`);
  check(server.errorLines().length === 0, `no error logged (${server.errorLines()[0]?.slice(0, 200) ?? ''})`);
  check(health.status === 200, 'the server is healthy afterwards');
  note(
    `${targets.length} targets, all ${[...new Set(Object.values(answers))].join('/')}; counted as bad-target: ${refused}`,
  );
  server.rssKiB();
  return { accepted: 0, tally: NOTHING, peakKiB: server.peakKiB };
}
