/**
 * Telemetry for the embedded runtime and the agent: a Prometheus registry behind the Metrics port
 * (text exposition format 0.0.4) and a JSON-lines Logger. Neither ever throws into the caller:
 * observability must not take the pipeline down.
 */
import type { Writable } from 'node:stream';
import type { Fields, Labels, Logger, Metrics } from '../core/ports.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type MetricType = 'counter' | 'gauge';

interface Family {
  type: MetricType;
  help: string | undefined;
  /** Keyed by the rendered label set, so equal labels in any order share a series. */
  series: Map<string, { labels: string; value: number }>;
}

export interface PrometheusRegistryOptions {
  /** Prepended to every metric name, e.g. `wasm_mirror_`. @default '' */
  prefix?: string;
}

const NAME_INVALID = /[^a-zA-Z0-9_:]/g;
const LABEL_INVALID = /[^a-zA-Z0-9_]/g;

function sanitizeName(name: string, invalid: RegExp): string {
  const cleaned = name.replace(invalid, '_');
  return cleaned === '' || /^[0-9]/.test(cleaned) ? `_${cleaned}` : cleaned;
}

function escapeLabelValue(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

function renderLabels(labels: Labels | undefined): string {
  if (labels === undefined) return '';
  const pairs = new Map<string, string>();
  for (const [raw, value] of Object.entries(labels)) {
    if (value === undefined) continue;
    let name = sanitizeName(raw, LABEL_INVALID);
    // Names starting with __ are reserved by Prometheus.
    if (name.startsWith('__')) name = `x${name}`;
    if (!pairs.has(name)) pairs.set(name, String(value));
  }
  if (pairs.size === 0) return '';
  const parts = [...pairs.keys()].sort().map((name) => `${name}="${escapeLabelValue(pairs.get(name)!)}"`);
  return `{${parts.join(',')}}`;
}

/**
 * Counters and gauges with labels. Names are given without the prefix (`webhooks_total`); invalid
 * characters become `_`. A name first used as a counter stays one: a later `gauge` call with the
 * same name is ignored rather than producing an exposition Prometheus would reject.
 */
export class PrometheusRegistry implements Metrics {
  readonly prefix: string;
  private readonly families = new Map<string, Family>();
  private readonly help = new Map<string, string>();
  private readonly collectors: Array<() => void | Promise<void>> = [];

  constructor(options: PrometheusRegistryOptions = {}) {
    this.prefix = options.prefix ?? '';
  }

  count(name: string, labels?: Labels, value = 1): void {
    try {
      // Counters only go up.
      if (!Number.isFinite(value) || value < 0) return;
      const series = this.seriesFor(name, 'counter', labels);
      if (series !== undefined) series.value += value;
    } catch {
      // Never let metrics break the caller.
    }
  }

  gauge(name: string, value: number, labels?: Labels): void {
    try {
      const series = this.seriesFor(name, 'gauge', labels);
      if (series !== undefined) series.value = value;
    } catch {
      // Never let metrics break the caller.
    }
  }

  /** Drops one gauge series (e.g. a queue that no longer exists), or the whole metric without labels given. */
  removeGauge(name: string, labels?: Labels): void {
    const family = this.families.get(this.fullName(name));
    if (family === undefined || family.type !== 'gauge') return;
    if (labels === undefined) family.series.clear();
    else family.series.delete(renderLabels(labels));
  }

  /** HELP text for a metric (name without the prefix). */
  describe(name: string, help: string): this {
    const full = this.fullName(name);
    this.help.set(full, help);
    const family = this.families.get(full);
    if (family !== undefined) family.help = help;
    return this;
  }

  /** A function run by `collect()` before a scrape, to refresh gauges read from elsewhere (queue depths). */
  addCollector(collector: () => void | Promise<void>): void {
    this.collectors.push(collector);
  }

  /** Runs the collectors; a failing one is skipped so the rest of the scrape still works. */
  async collect(): Promise<void> {
    for (const collector of this.collectors) {
      try {
        await collector();
      } catch {
        // A stale gauge beats a failed scrape.
      }
    }
  }

  /** Current value of a series, for tests and status pages. */
  value(name: string, labels?: Labels): number | undefined {
    return this.families.get(this.fullName(name))?.series.get(renderLabels(labels))?.value;
  }

  /** Text exposition format 0.0.4; families and series in a stable, sorted order. */
  render(): string {
    const lines: string[] = [];
    for (const name of [...this.families.keys()].sort()) {
      const family = this.families.get(name)!;
      if (family.series.size === 0) continue;
      if (family.help !== undefined) lines.push(`# HELP ${name} ${escapeHelp(family.help)}`);
      lines.push(`# TYPE ${name} ${family.type}`);
      for (const key of [...family.series.keys()].sort()) {
        const series = family.series.get(key)!;
        lines.push(`${name}${series.labels} ${formatValue(series.value)}`);
      }
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  private fullName(name: string): string {
    return sanitizeName(`${this.prefix}${name}`, NAME_INVALID);
  }

  private seriesFor(name: string, type: MetricType, labels: Labels | undefined) {
    const full = this.fullName(name);
    let family = this.families.get(full);
    if (family === undefined) {
      family = { type, help: this.help.get(full), series: new Map() };
      this.families.set(full, family);
    } else if (family.type !== type) {
      return undefined;
    }
    const key = renderLabels(labels);
    let series = family.series.get(key);
    if (series === undefined) {
      series = { labels: key, value: 0 };
      family.series.set(key, series);
    }
    return series;
  }
}

// ---------------------------------------------------------------------------------------------

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface JsonLinesLoggerOptions {
  /** @default process.stderr */
  stream?: Pick<Writable, 'write'>;
  /** Lowest level written. @default 'info' */
  level?: LogLevel;
  /** Fields added to every line (service name, pid). */
  base?: Fields;
  /** @default () => new Date() */
  now?: () => Date;
}

/**
 * One JSON object per line: `{"time","level","msg",...fields}`. Errors are expanded (name,
 * message, code, stack), bigints become strings, cycles are cut. A write that fails is dropped.
 */
export class JsonLinesLogger implements Logger {
  private readonly stream: Pick<Writable, 'write'>;
  private readonly level: LogLevel;
  private readonly threshold: number;
  private readonly base: Fields;
  private readonly now: () => Date;

  constructor(options: JsonLinesLoggerOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.level = options.level !== undefined && options.level in LEVELS ? options.level : 'info';
    this.threshold = LEVELS[this.level];
    this.base = options.base ?? {};
    this.now = options.now ?? (() => new Date());
  }

  /** A logger that adds `fields` to every line. */
  child(fields: Fields): JsonLinesLogger {
    return new JsonLinesLogger({
      stream: this.stream,
      level: this.level,
      base: { ...this.base, ...fields },
      now: this.now,
    });
  }

  debug(message: string, fields?: Fields): void {
    this.write('debug', message, fields);
  }

  info(message: string, fields?: Fields): void {
    this.write('info', message, fields);
  }

  warn(message: string, fields?: Fields): void {
    this.write('warn', message, fields);
  }

  error(message: string, fields?: Fields): void {
    this.write('error', message, fields);
  }

  private write(level: Exclude<LogLevel, 'silent'>, message: string, fields: Fields | undefined): void {
    if (LEVELS[level] < this.threshold) return;
    try {
      let time: string;
      try {
        time = this.now().toISOString();
      } catch {
        time = new Date().toISOString();
      }
      const line = safeStringify({ time, level, msg: String(message), ...this.base, ...fields });
      this.stream.write(`${line}\n`);
    } catch {
      // Logging must never throw into the code that logs.
    }
  }
}

function safeStringify(value: Record<string, unknown>): string {
  // Objects on the path from the root to the current value: a repeat is a cycle, a sibling share is not.
  const ancestors: unknown[] = [];
  const errors = new WeakSet<Error>();
  return JSON.stringify(value, function (this: unknown, _key, v: unknown) {
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'function' || typeof v === 'symbol') return undefined;
    if (typeof v !== 'object' || v === null) return v;
    while (ancestors.length > 0 && ancestors[ancestors.length - 1] !== this) ancestors.pop();
    if (ancestors.includes(v)) return '[Circular]';
    if (v instanceof Error) {
      if (errors.has(v)) return '[Circular]';
      errors.add(v);
      const out: Record<string, unknown> = { name: v.name, message: v.message };
      const extra = v as Error & { code?: unknown; cause?: unknown };
      if (extra.code !== undefined) out.code = extra.code;
      if (v.stack !== undefined) out.stack = v.stack;
      if (extra.cause !== undefined) out.cause = extra.cause;
      ancestors.push(out);
      return out;
    }
    ancestors.push(v);
    return v;
  });
}
