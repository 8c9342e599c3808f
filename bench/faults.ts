/**
 * The fault suite (run: `npm run test:faults`, or `npm run test:faults -- <words>` for the cases
 * whose names contain them): faults and abuse against the real embedded server, run as a child
 * process (`node bin/wasm-mirror.mjs serve`) so its peak RSS (VmHWM) is its own, and against the
 * agent where the case is the agent's. Everything listens on 127.0.0.1; every flood is bounded.
 *
 * One row per case: webhook deliveries the server accepted, modules the verified listing holds,
 * pushes lost (not listed, or not landed by the agent) and duplicated (a (name, tag) listed twice,
 * or one push's module under two digests), the server's peak RSS, and pass or fail. A case fails
 * when anything is lost or duplicated, when one of its checks does not hold, or when it errs or
 * runs past its time. Exit 1 if any case fails. Figures: bench/README.md, "Faults".
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { eventFlood, malformedTargets, slowBodyFlood, statusWithDeadLetters } from './faults/abuse-cases.ts';
import { agentDiskFull, stalledDownload } from './faults/agent-cases.ts';
import type { CaseResult, FaultCase } from './faults/case.ts';
import { killStragglers, MirrorServer, ROOT, Scope, starts } from './faults/harness.ts';
import {
  concurrentMirrorCommands,
  crashLeftovers,
  diskFullDuringPulls,
  eventBeforeTag,
  killDuringBurst,
  registryFlapping,
} from './faults/pipeline-cases.ts';
import { emptyLockFile, healthzExpired, lostSigningKey } from './faults/startup-cases.ts';

const CASES: { name: string; run: FaultCase; timeoutMs: number }[] = [
  { name: 'disk full during pulls (tmpfs)', run: diskFullDuringPulls, timeoutMs: 180_000 },
  { name: 'push event before its tag exists', run: eventBeforeTag, timeoutMs: 60_000 },
  { name: 'two mirror commands, no server', run: concurrentMirrorCommands, timeoutMs: 120_000 },
  { name: 'delivery of 3,000 events, x20', run: eventFlood, timeoutMs: 90_000 },
  { name: '500 unauthenticated slow bodies', run: slowBodyFlood, timeoutMs: 90_000 },
  { name: '/status, 50,000 dead letters', run: statusWithDeadLetters, timeoutMs: 90_000 },
  { name: 'malformed request targets', run: malformedTargets, timeoutMs: 30_000 },
  { name: 'lost signing key', run: lostSigningKey, timeoutMs: 150_000 },
  { name: 'stalled module download (agent)', run: stalledDownload, timeoutMs: 150_000 },
  { name: '/healthz, expired manifest', run: healthzExpired, timeoutMs: 30_000 },
  { name: 'empty lock file', run: emptyLockFile, timeoutMs: 45_000 },
  { name: 'crash leftovers swept', run: crashLeftovers, timeoutMs: 150_000 },
  { name: 'kill -9 during a burst of pushes', run: killDuringBurst, timeoutMs: 150_000 },
  { name: 'registry flapping', run: registryFlapping, timeoutMs: 180_000 },
  { name: 'disk-full agent directory', run: agentDiskFull, timeoutMs: 150_000 },
];

interface Row {
  name: string;
  result?: CaseResult;
  failures: string[];
  notes: string[];
  seconds: number;
}

/** Rebuilds dist/ if a source changed since: the server and the CLI then run as users run them. */
function buildIfStale(): void {
  spawnSync(process.execPath, [join(ROOT, 'bin', 'build.mjs'), '--if-stale'], {
    cwd: ROOT,
    stdio: 'inherit',
  });
}

async function runCase(c: (typeof CASES)[number]): Promise<Row> {
  // Sources edited during a run would otherwise make later cases run them under tsx (more RSS).
  buildIfStale();
  const before = { ...starts };
  const firstServer = MirrorServer.all.length;
  const scope = new Scope();
  const failures: string[] = [];
  const notes: string[] = [];
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  let result: CaseResult | undefined;
  try {
    const running = c.run({
      scope,
      check: (ok, what) => {
        if (!ok) failures.push(what);
      },
      note: (text) => notes.push(text),
    });
    // A case that runs past its time is failed and its scope closed; its promise is left to settle.
    running.catch(() => undefined);
    result = await Promise.race([
      running,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`did not finish within ${c.timeoutMs / 1000} s`)),
          c.timeoutMs,
        );
      }),
    ]);
    if (result.tally.lost > 0) failures.push(`lost: ${result.tally.missing.join(', ')}`);
    if (result.tally.duplicated > 0) failures.push(`${result.tally.duplicated} duplicated entries`);
  } catch (err) {
    failures.push(`error: ${(err as Error).message.slice(0, 600)}`);
  } finally {
    clearTimeout(timer);
    await scope.close();
  }
  if (failures.length > 0) {
    const logged = MirrorServer.all.slice(firstServer).flatMap((s) => s.errorSummary());
    if (logged.length > 0) notes.push(`server errors logged: ${logged.join('; ')}`);
  }
  const fromSources = starts.fromSources - before.fromSources;
  if (fromSources > 0) {
    notes.push(
      `${fromSources} of ${starts.total - before.total} processes ran the TypeScript sources (dist/ went stale): RSS includes tsx`,
    );
  }
  return {
    name: c.name,
    ...(result === undefined ? {} : { result }),
    failures,
    notes,
    seconds: (performance.now() - started) / 1000,
  };
}

const COLUMNS = ['case', 'accepted', 'listed', 'lost', 'dup', 'peak RSS', 'time', 'result'];

function cells(row: Row): string[] {
  const r = row.result;
  const rss =
    r === undefined || r.peakKiB === 0
      ? '-'
      : `${(r.peakKiB / 1024).toFixed(0)} MiB${r.rssOf ? ` (${r.rssOf})` : ''}`;
  return [
    row.name,
    r === undefined ? '-' : String(r.accepted),
    r === undefined ? '-' : String(r.tally.listed),
    r === undefined ? '-' : String(r.tally.lost),
    r === undefined ? '-' : String(r.tally.duplicated),
    rss,
    `${row.seconds.toFixed(1)} s`,
    row.failures.length === 0 ? 'pass' : 'FAIL',
  ];
}

function table(rows: Row[]): string {
  const all = [COLUMNS, ...rows.map(cells)];
  const widths = COLUMNS.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  // Text left, figures right, as the other benchmark tables in bench/README.md.
  const line = (r: string[]) =>
    r
      .map((c, i) => (i === 0 || i === r.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return all.map(line).join('\n');
}

async function main(argv: string[]): Promise<number> {
  const tools = spawnSync(process.execPath, [join(ROOT, 'bin', 'check-tools.mjs')], { stdio: 'inherit' });
  if (tools.status !== 0) return 1;
  const wanted = argv.filter((a) => !a.startsWith('-')).map((a) => a.toLowerCase());
  const selected = CASES.filter(
    (c) => wanted.length === 0 || wanted.some((w) => c.name.toLowerCase().includes(w)),
  );
  if (selected.length === 0) {
    process.stderr.write(
      `no case matches ${argv.join(' ')}; the cases are:\n${CASES.map((c) => `  ${c.name}`).join('\n')}\n`,
    );
    return 2;
  }
  process.stdout.write(
    `fault suite: ${selected.length} cases; the server runs as \`node bin/wasm-mirror.mjs serve\`, from the bundle (dist/, rebuilt when stale)\n`,
  );
  const rows: Row[] = [];
  const started = performance.now();
  for (const c of selected) {
    const row = await runCase(c);
    rows.push(row);
    process.stdout.write(`${cells(row).join(' | ')}\n`);
  }
  process.stdout.write(`\n${table(rows)}\n\n`);
  for (const row of rows) {
    for (const n of row.notes) process.stdout.write(`${row.name}: ${n}\n`);
    for (const f of row.failures) process.stdout.write(`${row.name}: FAILED: ${f}\n`);
  }
  const failed = rows.filter((r) => r.failures.length > 0).length;
  process.stdout.write(
    `\n${rows.length - failed} passed, ${failed} failed, in ${((performance.now() - started) / 1000).toFixed(0)} s\n`,
  );
  return failed === 0 ? 0 : 1;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // Stop what the open cases started (by pid) and unmount their disks before leaving.
    void Scope.closeAll().finally(() => {
      killStragglers();
      process.exit(130);
    });
  });
}

// Exits explicitly: a case that timed out may still hold a socket or a timer, or a child.
const code = await main(process.argv.slice(2));
const stragglers = killStragglers();
if (stragglers > 0) process.stderr.write(`killed ${stragglers} process(es) a timed-out case left running\n`);
process.exit(code);
