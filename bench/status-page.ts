/**
 * How long the status page takes to verify a v2 tree in a browser that nothing instruments:
 * Debian's chromium started headless on the page's URL with a fresh profile, against a static
 * mirror of synthetic entries (test/status-page/static-mirror.ts). The page's own performance
 * marks are read over a DevTools pipe that enables no domain (Playwright, as the browser tests
 * use it, watches every request, which cost about half a millisecond each here). Each run
 * loads the page cold, then again with the same profile (a revisit: browser caches and storage
 * kept).
 *
 *   npx tsx bench/status-page.ts [--entries 5000] [--runs 5] [--baseline page.html] [--floor]
 *
 * `--baseline` serves a saved page (e.g. an older build's statusPageHtml()) in alternate runs, so
 * two builds are compared under the same load. `--floor` adds a page that only fetches every node
 * (as many in flight, with the same fetch options as the status page) and checks nothing: what
 * the requests alone cost.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { NODE_CONCURRENCY } from '../shared/status-page/client/verify.ts';
import { statusPageHtml } from '../shared/status-page/page.ts';
import { chromiumPath } from '../test/status-page/browser.ts';
import { startStaticMirror, syntheticEntries } from '../test/status-page/static-mirror.ts';

const { values } = parseArgs({
  options: {
    entries: { type: 'string', default: '5000' },
    runs: { type: 'string', default: '5' },
    baseline: { type: 'string' },
    floor: { type: 'boolean', default: false },
  },
});
const entries = Number(values.entries);
const runs = Number(values.runs);

const mirror = await startStaticMirror({ entries: syntheticEntries(entries), mirror: 'bench-mesh' });
const nodePaths = [...mirror.files.keys()].filter((k) => k.includes('/nodes/'));

const pages: { label: string; html: Uint8Array }[] = [
  { label: 'this build', html: new TextEncoder().encode(await statusPageHtml()) },
];
if (values.baseline !== undefined) pages.unshift({ label: 'baseline', html: readFileSync(values.baseline) });
if (values.floor) {
  const script = `(async () => {
    const paths = ${JSON.stringify(nodePaths)};
    let next = 0;
    const worker = async () => {
      while (next < paths.length)
        await (await fetch(paths[next++], { cache: 'no-store', credentials: 'same-origin' })).arrayBuffer();
    };
    await Promise.all(Array.from({ length: ${NODE_CONCURRENCY} }, worker));
    performance.mark('status-page:verified');
    performance.mark('status-page:listed');
    document.body.dataset.ready = 'fetched';
  })();`;
  pages.push({
    label: 'fetch only',
    html: new TextEncoder().encode(`<!doctype html><body><script>${script}</script></body>`),
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The DevTools protocol over --remote-debugging-pipe: messages separated by NUL. */
class Cdp {
  #id = 0;
  #buffer = '';
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(
    private readonly out: Writable,
    input: Readable,
  ) {
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      this.#buffer += chunk;
      for (let end = this.#buffer.indexOf('\0'); end >= 0; end = this.#buffer.indexOf('\0')) {
        const message = JSON.parse(this.#buffer.slice(0, end)) as {
          id?: number;
          result?: unknown;
          error?: { message: string };
        };
        this.#buffer = this.#buffer.slice(end + 1);
        const waiting = message.id === undefined ? undefined : this.#pending.get(message.id);
        if (waiting === undefined) continue;
        this.#pending.delete(message.id!);
        if (message.error) waiting.reject(new Error(message.error.message));
        else waiting.resolve(message.result);
      }
    });
  }

  send<T>(method: string, params: object = {}, sessionId?: string): Promise<T> {
    const id = ++this.#id;
    this.out.write(`${JSON.stringify({ id, method, params, sessionId })}\0`);
    return new Promise((resolve, reject) =>
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject }),
    );
  }
}

interface Run {
  /** Navigation start to every node checked. */
  verified: number;
  /** Navigation start to the list rendered. */
  listed: number;
  verdict: string;
  /** Node requests the server answered. */
  requests: number;
}

/** Loads the page once in a chromium on `profile`, and closes it cleanly (storage is flushed). */
async function load(html: Uint8Array, profile: string): Promise<Run> {
  mirror.files.set('index.html', html);
  mirror.requests.length = 0;
  const child = spawn(
    chromiumPath(),
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--remote-debugging-pipe',
      `--user-data-dir=${profile}`,
      `${mirror.url}/`,
    ],
    { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const cdp = new Cdp(child.stdio[3] as Writable, child.stdio[4] as Readable);
  try {
    let sessionId: string | undefined;
    const deadline = Date.now() + 120_000;
    while (sessionId === undefined && Date.now() < deadline) {
      const { targetInfos } = await cdp.send<{ targetInfos: { targetId: string; type: string }[] }>(
        'Target.getTargets',
      );
      const page = targetInfos.find((t) => t.type === 'page');
      if (page !== undefined)
        ({ sessionId } = await cdp.send<{ sessionId: string }>('Target.attachToTarget', {
          targetId: page.targetId,
          flatten: true,
        }));
      else await sleep(20);
    }
    // Runtime.evaluate without enabling any domain: the page runs as it would unwatched.
    const evaluate = async <T>(expression: string) =>
      (
        await cdp.send<{ result: { value: T } }>(
          'Runtime.evaluate',
          { expression, returnByValue: true },
          sessionId,
        )
      ).result.value;
    let verdict = '';
    while (verdict === '' && Date.now() < deadline) {
      verdict = (await evaluate<string | undefined>('document.body?.dataset.ready')) ?? '';
      if (verdict === '') await sleep(50);
    }
    // Give the page time to keep what it verified (status-page:kept), if it does.
    for (let i = 0; i < 40; i++) {
      if (await evaluate<boolean>(`performance.getEntriesByName('status-page:kept').length > 0`)) break;
      await sleep(50);
    }
    const marks = await evaluate<Record<string, number>>(
      `Object.fromEntries(performance.getEntriesByType('mark').map((m) => [m.name, m.startTime]))`,
    );
    await cdp.send('Browser.close').catch(() => undefined);
    return {
      verified: marks['status-page:verified'] ?? Number.NaN,
      listed: marks['status-page:listed'] ?? Number.NaN,
      verdict,
      requests: mirror.requests.filter((p) => p.includes('/nodes/')).length,
    };
  } finally {
    const killer = setTimeout(() => child.kill(), 10_000);
    await exited;
    clearTimeout(killer);
  }
}

const results = new Map<string, { cold: Run[]; revisit: Run[] }>(
  pages.map((p) => [p.label, { cold: [], revisit: [] }]),
);
const show = (r: Run) =>
  `${r.verdict}, tree verified ${Math.round(r.verified)} ms, listed ${Math.round(r.listed)} ms, ${r.requests} node requests`;
try {
  for (let r = 0; r < runs; r++) {
    for (const p of pages) {
      const profile = mkdtempSync(join(tmpdir(), 'wm-bench-chromium-'));
      try {
        const cold = await load(p.html, profile);
        const revisit = await load(p.html, profile);
        results.get(p.label)!.cold.push(cold);
        results.get(p.label)!.revisit.push(revisit);
        console.log(`run ${r + 1} ${p.label}: cold ${show(cold)}; revisit ${show(revisit)}`);
      } finally {
        rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      }
    }
  }
} finally {
  await mirror.stop();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
console.log(
  `\nstatus page, ${entries} entries, ${nodePaths.length} v2 nodes over HTTP/1.1, ${runs} runs each, median ms from navigation start:`,
);
for (const [label, { cold, revisit }] of results) {
  const row = (list: Run[]) =>
    `tree verified ${String(Math.round(median(list.map((x) => x.verified)))).padStart(5)}, listed ${String(Math.round(median(list.map((x) => x.listed)))).padStart(5)}`;
  console.log(`  ${label.padEnd(10)}  cold: ${row(cold)};  revisit: ${row(revisit)}`);
}
