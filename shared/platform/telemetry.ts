/**
 * Telemetry for the embedded runtime and the agent: a Prometheus registry behind the Metrics port
 * (text exposition format 0.0.4) and a JSON-lines Logger. Neither ever throws into the caller:
 * observability must not take the pipeline down.
 *
 * prom-client holds the series, so counter, gauge and histogram semantics are Prometheus's own
 * rather than ours; the text is rendered here, sorted, so scrapes and tests compare stably.
 */
import type { Writable } from 'node:stream';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Fields, Labels, Logger, Metrics } from '../core/ports.ts';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

type MetricType = 'counter' | 'gauge' | 'histogram';

interface Family {
  type: MetricType;
  /** Undefined after `removeGauge` dropped the whole metric; made again on next use. */
  metric: Counter | Gauge | Histogram | undefined;
}

/** One rendered line's worth: prom-client names histogram series `_bucket`, `_sum` and `_count`. */
interface Sample {
  value: number;
  labels: Partial<Record<string, string | number>>;
  metricName?: string;
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

/** Valid, unreserved label names with string values; the first of two names that clean up alike wins. */
function cleanLabels(labels: Labels | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (labels === undefined) return out;
  for (const [raw, value] of Object.entries(labels)) {
    if (value === undefined) continue;
    let name = sanitizeName(raw, LABEL_INVALID);
    // Names starting with __ are reserved by Prometheus.
    if (name.startsWith('__')) name = `x${name}`;
    if (!(name in out)) out[name] = String(value);
  }
  return out;
}

function renderLabels(labels: Sample['labels'], skip?: string): string {
  const names = Object.keys(labels)
    .filter((name) => name !== skip && labels[name] !== undefined)
    .sort();
  if (names.length === 0) return '';
  return `{${names.map((name) => `${name}="${escapeLabelValue(String(labels[name]))}"`).join(',')}}`;
}

/**
 * Counters, gauges and histograms with labels. Names are given without the prefix
 * (`webhooks_total`); invalid characters become `_`. A metric is made on first use with the label
 * names of that call; a later call with another label name is dropped. A name first used as a
 * counter stays one: a later `gauge` call with the same name is ignored rather than producing an
 * exposition Prometheus would reject.
 */
export class PrometheusRegistry implements Metrics {
  readonly prefix: string;
  readonly #registry = new Registry();
  readonly #families = new Map<string, Family>();
  readonly #help = new Map<string, string>();
  readonly #collectors: Array<() => void | Promise<void>> = [];

  constructor(options: PrometheusRegistryOptions = {}) {
    this.prefix = options.prefix ?? '';
  }

  count(name: string, labels?: Labels, value = 1): void {
    try {
      // Counters only go up.
      if (!Number.isFinite(value) || value < 0) return;
      const clean = cleanLabels(labels);
      (this.#metric(name, 'counter', clean) as Counter | undefined)?.inc(clean, value);
    } catch {
      // Never let metrics break the caller.
    }
  }

  gauge(name: string, value: number, labels?: Labels): void {
    try {
      const clean = cleanLabels(labels);
      (this.#metric(name, 'gauge', clean) as Gauge | undefined)?.set(clean, value);
    } catch {
      // Never let metrics break the caller.
    }
  }

  /**
   * Adds one observation to a histogram, with prom-client's default buckets (5 ms to 10 s: give
   * durations in seconds).
   */
  observe(name: string, value: number, labels?: Labels): void {
    try {
      if (!Number.isFinite(value)) return;
      const clean = cleanLabels(labels);
      (this.#metric(name, 'histogram', clean) as Histogram | undefined)?.observe(clean, value);
    } catch {
      // Never let metrics break the caller.
    }
  }

  /** Drops one gauge series (e.g. a queue that no longer exists), or the whole metric without labels given. */
  removeGauge(name: string, labels?: Labels): void {
    const full = this.#fullName(name);
    const family = this.#families.get(full);
    if (family?.type !== 'gauge' || family.metric === undefined) return;
    try {
      if (labels === undefined) {
        this.#registry.removeSingleMetric(full);
        family.metric = undefined;
      } else {
        (family.metric as Gauge).remove(cleanLabels(labels));
      }
    } catch {
      // A label set the gauge never had: nothing to remove.
    }
  }

  /** HELP text for a metric (name without the prefix). */
  describe(name: string, help: string): this {
    this.#help.set(this.#fullName(name), help);
    return this;
  }

  /** A function run by `collect()` before a scrape, to refresh gauges read from elsewhere (queue depths). */
  addCollector(collector: () => void | Promise<void>): void {
    this.#collectors.push(collector);
  }

  /** Runs the collectors; a failing one is skipped so the rest of the scrape still works. */
  async collect(): Promise<void> {
    for (const collector of this.#collectors) {
      try {
        await collector();
      } catch {
        // A stale gauge beats a failed scrape.
      }
    }
  }

  /** Current value of a counter or gauge series, for tests and status pages. */
  async value(name: string, labels?: Labels): Promise<number | undefined> {
    const metric = this.#families.get(this.#fullName(name))?.metric;
    if (metric === undefined || metric instanceof Histogram) return undefined;
    const key = renderLabels(cleanLabels(labels));
    const { values } = await metric.get();
    return values.find((sample) => renderLabels(sample.labels) === key)?.value;
  }

  /** Text exposition format 0.0.4; families and series in a stable, sorted order. */
  async render(): Promise<string> {
    const lines: string[] = [];
    const families = await this.#registry.getMetricsAsJSON();
    families.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const family of families) {
      if (family.values.length === 0) continue;
      const help = this.#help.get(family.name);
      if (help !== undefined) lines.push(`# HELP ${family.name} ${escapeHelp(help)}`);
      lines.push(`# TYPE ${family.name} ${family.type}`);
      // Sorted by label set; a stable sort keeps each histogram's buckets, _sum and _count in order.
      const samples = (family.values as Sample[])
        .map((sample) => ({ sample, key: renderLabels(sample.labels, 'le') }))
        .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
      for (const { sample } of samples) {
        const name = sample.metricName ?? family.name;
        lines.push(`${name}${renderLabels(sample.labels)} ${formatValue(sample.value)}`);
      }
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  #fullName(name: string): string {
    return sanitizeName(`${this.prefix}${name}`, NAME_INVALID);
  }

  #metric(name: string, type: MetricType, labels: Record<string, string>) {
    const full = this.#fullName(name);
    const family = this.#families.get(full);
    if (family !== undefined && family.type !== type) return undefined;
    if (family?.metric !== undefined) return family.metric;
    const config = {
      name: full,
      // Required by prom-client; the exposition prints only text given to `describe`.
      help: this.#help.get(full) ?? full,
      labelNames: Object.keys(labels),
      registers: [this.#registry],
    };
    const metric =
      type === 'counter' ? new Counter(config) : type === 'gauge' ? new Gauge(config) : new Histogram(config);
    this.#families.set(full, { type, metric });
    return metric;
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
