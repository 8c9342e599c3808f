/**
 * What every fault case starts and stops: the embedded server as a child process (so its peak RSS
 * is its own), a CNCF Distribution registry that can be killed and restarted on the same port and
 * storage, CLI runs with their peak RSS, and a scope that stops all of it by pid and removes its
 * directories, whatever happens to the case.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../../test/support/registry.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'wasm-mirror.mjs');
export const TOKEN = 'faults-hook-token-0123456789abcdef';

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const MiB = 1024 * 1024;

/** Peak resident set (VmHWM) or current one (VmRSS) of a live process, in KiB; undefined once it is gone. */
export function procKiB(pid: number | undefined, field: 'VmHWM' | 'VmRSS'): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]);
  } catch {
    return undefined;
  }
}

/** Cleanups run in reverse order, once; open scopes are closed on SIGINT/SIGTERM too. */
export class Scope {
  private static readonly open = new Set<Scope>();
  private readonly cleanups: (() => unknown)[] = [];
  private closed = false;

  constructor() {
    Scope.open.add(this);
  }

  /** Registers a cleanup; on a scope already closed (a case that ran past its time) it runs now. */
  defer(cleanup: () => unknown): void {
    if (!this.closed) {
      this.cleanups.push(cleanup);
      return;
    }
    Promise.resolve()
      .then(cleanup)
      .catch(() => undefined);
  }

  tempDir(name: string): string {
    const dir = mkdtempSync(join(tmpdir(), `wm-faults-${name}-`));
    this.defer(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  }

  async close(): Promise<void> {
    this.closed = true;
    Scope.open.delete(this);
    for (const cleanup of this.cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        process.stderr.write(`cleanup failed: ${(err as Error).message}\n`);
      }
    }
  }

  static async closeAll(): Promise<void> {
    for (const scope of [...Scope.open]) await scope.close();
  }
}

/** Every child this process started and that has not exited yet. */
const live = new Set<ChildProcess>();

/** Spawns a child and keeps track of it until it exits. */
function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * Last resort before the suite exits: kills (by pid) any child still running, such as one a case
 * started after it ran past its time and its scope was closed.
 */
export function killStragglers(): number {
  const n = live.size;
  for (const child of live) child.kill('SIGKILL');
  return n;
}

/** Sends `signal` to a child by its pid and waits for it to exit (SIGKILL after `graceMs`). */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill(signal);
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

/** Polls `probe` until it returns a value other than undefined; throws after `timeoutMs`. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs: number,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch {
      // not there yet (a server restarting, a file being written)
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Processes started through bin/wasm-mirror.mjs, and those of them that ran the TypeScript sources. */
export const starts = { total: 0, fromSources: 0 };

function countStart(): void {
  starts.total++;
  if (!bundleIsFresh()) starts.fromSources++;
}

/** Is dist/ at least as new as every source? Otherwise bin/wasm-mirror.mjs runs the sources under tsx. */
export function bundleIsFresh(): boolean {
  try {
    const stamp = JSON.parse(readFileSync(join(ROOT, 'dist', 'wasm-mirror.stamp.json'), 'utf8')) as {
      newestSourceMtime: number;
    };
    let newest = 0;
    for (const e of readdirSync(join(ROOT, 'shared'), { recursive: true, withFileTypes: true })) {
      if (e.isFile() && e.name.endsWith('.ts'))
        newest = Math.max(newest, statSync(join(e.parentPath, e.name)).mtimeMs);
    }
    return stamp.newestSourceMtime >= newest;
  } catch {
    return false;
  }
}

/** Sums a Prometheus counter's samples, optionally only those whose labels include `labels`. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{([^}]*)\\})? ([0-9.e+-]+)$`, 'gm'))) {
    const have = m[1] ?? '';
    if (Object.entries(labels).every(([k, v]) => have.includes(`${k}="${v}"`))) sum += Number(m[2]);
  }
  return sum;
}

/** Counts of a counter's samples by one label. */
export function metricBy(text: string, name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} ([0-9.e+-]+)$`, 'gm'))) {
    const value = new RegExp(`${label}="([^"]*)"`).exec(m[1]!)?.[1] ?? '';
    out[value] = (out[value] ?? 0) + Number(m[2]);
  }
  return out;
}

export interface ServeOptions {
  dataDir: string;
  /** Config file text; written beside the data directory. */
  config: string;
  env?: Record<string, string>;
  port?: number;
}

/**
 * `node bin/wasm-mirror.mjs serve` on one data directory and port, started and stopped as often as
 * a case needs. Keeps its stderr, its peak RSS over every run (read from /proc just before each
 * stop) and the webhook deliveries it accepted over every run (its metrics, scraped before each
 * stop: a kill -9 forgets its counters).
 */
export class MirrorServer {
  /** Every server started in this run, so a failed case can show what its servers logged. */
  static readonly all: MirrorServer[] = [];
  readonly url: string;
  readonly configPath: string;
  child: ChildProcess | undefined;
  stderr = '';
  peakKiB = 0;
  starts = 0;
  private acceptedBefore = 0;
  private acceptedNow = 0;

  private constructor(
    scope: Scope,
    readonly options: ServeOptions & { port: number },
  ) {
    MirrorServer.all.push(this);
    this.url = `http://127.0.0.1:${options.port}`;
    this.configPath = `${options.dataDir.replace(/\/+$/, '')}.config.yaml`;
    writeFileSync(this.configPath, options.config);
    scope.defer(() => rmSync(this.configPath, { force: true }));
    scope.defer(() => this.stop());
  }

  static async create(scope: Scope, options: ServeOptions): Promise<MirrorServer> {
    return new MirrorServer(scope, { ...options, port: options.port ?? (await freePort()) });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Spawns the server; resolves once it answers HTTP, or with its exit code if it exits first. */
  async start(timeoutMs = 30_000): Promise<{ exitCode: number | null } | undefined> {
    countStart();
    this.starts++;
    this.acceptedBefore += this.acceptedNow;
    this.acceptedNow = 0;
    const child = track(
      spawn(
        process.execPath,
        [
          BIN,
          'serve',
          '--data',
          this.options.dataDir,
          '--config',
          this.configPath,
          '--port',
          String(this.options.port),
        ],
        { env: { ...process.env, ...this.options.env }, stdio: ['ignore', 'ignore', 'pipe'] },
      ),
    );
    this.child = child;
    child.stderr?.on('data', (d: Buffer) => {
      // Enough to find error lines and say why a start failed, never unbounded.
      this.stderr = (this.stderr + d.toString('utf8')).slice(-256 * 1024);
    });
    const exited = new Promise<{ exitCode: number | null }>((resolve) =>
      child.once('exit', (code) => resolve({ exitCode: code })),
    );
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const early = await Promise.race([exited, sleep(50).then(() => undefined)]);
      if (early !== undefined) return early;
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return undefined;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        await stopChild(child, 'SIGKILL');
        throw new Error(`server did not answer within ${timeoutMs} ms: ${this.stderr.slice(-2000)}`);
      }
    }
  }

  /** Starts the server and fails unless it comes up. */
  async up(timeoutMs?: number): Promise<void> {
    const exit = await this.start(timeoutMs);
    if (exit !== undefined)
      throw new Error(`server exited (${exit.exitCode}) at start: ${this.stderr.slice(-2000)}`);
  }

  private sample(): void {
    this.peakKiB = Math.max(this.peakKiB, procKiB(this.pid, 'VmHWM') ?? 0);
  }

  rssKiB(): number {
    this.sample();
    return procKiB(this.pid, 'VmRSS') ?? 0;
  }

  async metrics(): Promise<string> {
    const text = await (await fetch(`${this.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
    this.acceptedNow = metricSum(text, 'wasm_mirror_webhooks_total', { outcome: 'accepted' });
    return text;
  }

  /**
   * Webhook deliveries accepted over every run so far: its counters summed over runs, or the
   * delivery markers it keeps on disk (one per accepted delivery id), whichever is higher. Both
   * can only miss some: counters die with a kill -9 after the last scrape; a marker is written
   * just after the delivery's jobs are queued, so a kill in between skips it.
   */
  async accepted(): Promise<number> {
    await this.metrics().catch(() => undefined);
    const markers = filesUnder(join(this.options.dataDir, 'state', 'deliveries')).length;
    return Math.max(this.acceptedBefore + this.acceptedNow, markers);
  }

  async stop(): Promise<void> {
    if (this.child === undefined) return;
    await this.metrics().catch(() => undefined);
    this.sample();
    await stopChild(this.child, 'SIGTERM');
  }

  async kill9(): Promise<void> {
    if (this.child === undefined) return;
    await this.metrics().catch(() => undefined);
    this.sample();
    await stopChild(this.child, 'SIGKILL');
  }

  /** Error lines the server logged (JSON lines with level error). */
  errorLines(): string[] {
    return this.stderr.split('\n').filter((l) => l.includes('"level":"error"'));
  }

  /** Its error lines counted by message and code, e.g. `mirror rejected MANIFEST_UNKNOWN x2`. */
  errorSummary(): string[] {
    const counts = new Map<string, number>();
    for (const line of this.errorLines()) {
      try {
        const { msg, code } = JSON.parse(line) as { msg?: string; code?: string };
        const key = `${msg ?? '?'}${code === undefined ? '' : ` ${code}`}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      } catch {
        // a line cut by the stderr cap
      }
    }
    return [...counts].map(([key, n]) => `${key} x${n}`);
  }
}

/**
 * A Debian `docker-registry` on 127.0.0.1 that notifies the mirror of manifest pushes only (not
 * pulls, not layers, as examples/first-module/registry.yml does), and can be killed and started
 * again on the same port and storage: a registry outage.
 */
export class FlappingRegistry {
  readonly host: string;
  readonly url: string;
  child: ChildProcess | undefined;
  private readonly configPath: string;

  private constructor(
    scope: Scope,
    readonly port: number,
    notify: { url: string; token: string } | undefined,
  ) {
    const dir = scope.tempDir('registry');
    this.host = `127.0.0.1:${port}`;
    this.url = `http://${this.host}`;
    const lines = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'storage')}`,
      'http:',
      `  addr: ${this.host}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
    ];
    if (notify !== undefined) {
      lines.push(
        'notifications:',
        '  endpoints:',
        '    - name: wasm-mirror',
        `      url: ${notify.url}`,
        '      headers:',
        `        Authorization: ["Bearer ${notify.token}"]`,
        '      timeout: 2s',
        '      threshold: 3',
        '      backoff: 1s',
        '      ignore:',
        '        actions: [pull]',
        '        mediatypes: [application/octet-stream]',
      );
    }
    this.configPath = join(dir, 'config.yml');
    mkdirSync(join(dir, 'storage'));
    writeFileSync(this.configPath, `${lines.join('\n')}\n`);
    scope.defer(() => this.stop());
  }

  static async start(scope: Scope, notify?: { url: string; token: string }): Promise<FlappingRegistry> {
    const registry = new FlappingRegistry(scope, await freePort(), notify);
    await registry.start();
    return registry;
  }

  async start(): Promise<void> {
    let stderr = '';
    const child = track(
      spawn('docker-registry', ['serve', this.configPath], { stdio: ['ignore', 'ignore', 'pipe'] }),
    );
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4000);
    });
    this.child = child;
    await until(
      'the registry',
      async () => {
        if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
        const res = await fetch(`${this.url}/v2/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return res.status === 200 ? true : undefined;
      },
      15_000,
      50,
    ).catch((err) => {
      throw new Error(`${(err as Error).message}: ${stderr}`);
    });
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child !== undefined) await stopChild(this.child, signal);
  }
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  /** Highest VmHWM seen while it ran (sampled every 20 ms). */
  peakKiB: number;
}

/** Runs `wasm-mirror <args>` as a child process, sampling its peak RSS; killed by pid past `timeoutMs`. */
export async function runCli(
  args: string[],
  options: { timeoutMs?: number; cwd?: string } = {},
): Promise<CliRun> {
  const started = performance.now();
  countStart();
  const child = track(
    spawn(process.execPath, [BIN, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    }),
  );
  let stdout = '';
  let stderr = '';
  let peakKiB = 0;
  child.stdout?.on('data', (d: Buffer) => {
    stdout = (stdout + d.toString('utf8')).slice(-64 * 1024);
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-64 * 1024);
  });
  const sampler = setInterval(() => {
    peakKiB = Math.max(peakKiB, procKiB(child.pid, 'VmHWM') ?? 0);
  }, 20);
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearInterval(sampler);
  clearTimeout(timer);
  return { code, stdout, stderr, ms: performance.now() - started, peakKiB };
}

/** Files under `dir` (recursively) whose name matches, as paths relative to it. */
export function filesUnder(dir: string, match: (name: string) => boolean = () => true): string[] {
  try {
    return readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile() && match(e.name))
      .map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
  } catch {
    return [];
  }
}
