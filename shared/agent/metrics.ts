/**
 * Prometheus text exposition for the agent, behind the core's Metrics port. Istio's agent names
 * are used where they mean the same thing, so existing dashboards keep working.
 */
import type { Labels, Metrics } from '../ports.ts';

interface Family {
  type: 'counter' | 'gauge';
  help: string;
  series: Map<string, { labels: Labels; value: number }>;
}

const HELP: Record<string, { type: 'counter' | 'gauge'; help: string }> = {
  wasm_cache_entries: { type: 'gauge', help: 'Modules in the local cache directory.' },
  wasm_cache_lookup_count: { type: 'counter', help: 'Module lookups in the local cache, by hit.' },
  wasm_remote_fetch_count: { type: 'counter', help: 'Remote fetches of manifests and modules, by result.' },
  wasm_mirror_manifest_version: { type: 'gauge', help: 'Version of the accepted manifest.' },
  wasm_mirror_manifest_expiry_seconds: {
    type: 'gauge',
    help: 'Seconds until the accepted manifest expires.',
  },
  wasm_mirror_verification_failures_total: {
    type: 'counter',
    help: 'Manifest or module verification failures, by code.',
  },
  wasm_mirror_sync_total: { type: 'counter', help: 'Sync attempts, by result.' },
  wasm_mirror_last_success_timestamp_seconds: {
    type: 'gauge',
    help: 'Unix time of the last successful sync.',
  },
};

const labelKey = (labels: Labels) =>
  Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`)
    .join(',');

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

export class PrometheusRegistry implements Metrics {
  readonly #families = new Map<string, Family>();
  readonly #collectors: (() => void)[] = [];

  count(name: string, labels: Labels = {}, value = 1): void {
    const s = this.#series(name, 'counter', labels);
    s.value += value;
  }

  gauge(name: string, value: number, labels: Labels = {}): void {
    this.#series(name, 'gauge', labels).value = value;
  }

  /** Runs before each render, for values that depend on the time of the scrape. */
  onCollect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  value(name: string, labels: Labels = {}): number | undefined {
    return this.#families.get(name)?.series.get(labelKey(labels))?.value;
  }

  render(): string {
    for (const fn of this.#collectors) fn();
    const lines: string[] = [];
    for (const [name, family] of [...this.#families].sort(([a], [b]) => (a < b ? -1 : 1))) {
      lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
      for (const { labels, value } of family.series.values()) {
        const keys = Object.keys(labels).sort();
        const l = keys.length
          ? `{${keys.map((k) => `${k}="${escapeLabel(labels[k] ?? '')}"`).join(',')}}`
          : '';
        lines.push(`${name}${l} ${Number.isFinite(value) ? value : 'NaN'}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }

  #series(name: string, type: 'counter' | 'gauge', labels: Labels) {
    let family = this.#families.get(name);
    if (family === undefined) {
      family = { type: HELP[name]?.type ?? type, help: HELP[name]?.help ?? name, series: new Map() };
      this.#families.set(name, family);
    }
    const key = labelKey(labels);
    let s = family.series.get(key);
    if (s === undefined) {
      s = { labels: { ...labels }, value: 0 };
      family.series.set(key, s);
    }
    return s;
  }
}
