import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { WasmMirrorError } from '../../../shared/core/errors.ts';
import type { Logger, Metrics } from '../../../shared/core/ports.ts';
import {
  JsonLinesLogger,
  PROMETHEUS_CONTENT_TYPE,
  PrometheusRegistry,
} from '../../../shared/platform/telemetry.ts';

new PrometheusRegistry() satisfies Metrics;
new JsonLinesLogger() satisfies Logger;

function sink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      done();
    },
  });
  return { stream, lines, json: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('PrometheusRegistry', () => {
  it('renders counters and gauges in text format 0.0.4 with the prefix, sorted', () => {
    const r = new PrometheusRegistry({ prefix: 'wasm_mirror_' });
    r.describe('webhooks_total', 'Webhook deliveries by source and outcome.');
    r.count('webhooks_total', { source: 'local', outcome: 'accepted' });
    r.count('webhooks_total', { outcome: 'accepted', source: 'local' }, 2);
    r.count('webhooks_total', { source: 'local', outcome: 'ignored' });
    r.gauge('manifest_version', 42);
    r.gauge('manifest_version', 43);
    expect(r.render()).toBe(
      [
        '# TYPE wasm_mirror_manifest_version gauge',
        'wasm_mirror_manifest_version 43',
        '# HELP wasm_mirror_webhooks_total Webhook deliveries by source and outcome.',
        '# TYPE wasm_mirror_webhooks_total counter',
        'wasm_mirror_webhooks_total{outcome="accepted",source="local"} 3',
        'wasm_mirror_webhooks_total{outcome="ignored",source="local"} 1',
        '',
      ].join('\n'),
    );
    expect(r.value('webhooks_total', { source: 'local', outcome: 'accepted' })).toBe(3);
    expect(PROMETHEUS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('escapes label values and help text, and sanitises names', () => {
    const r = new PrometheusRegistry();
    r.describe('odd-name', 'line one\nback\\slash');
    r.count('odd-name', { 'repo/path': 'a"b\\c\nd', __reserved: 'x' });
    expect(r.render()).toBe(
      [
        '# HELP odd_name line one\\nback\\\\slash',
        '# TYPE odd_name counter',
        'odd_name{repo_path="a\\"b\\\\c\\nd",x__reserved="x"} 1',
        '',
      ].join('\n'),
    );
  });

  it('formats special values, ignores negative counter increments and type clashes', () => {
    const r = new PrometheusRegistry();
    r.gauge('g', Number.POSITIVE_INFINITY, { k: 'inf' });
    r.gauge('g', Number.NEGATIVE_INFINITY, { k: 'minf' });
    r.gauge('g', Number.NaN, { k: 'nan' });
    r.count('c', {}, -1);
    r.count('c');
    r.gauge('c', 5);
    expect(r.render()).toContain('g{k="inf"} +Inf');
    expect(r.render()).toContain('g{k="minf"} -Inf');
    expect(r.render()).toContain('g{k="nan"} NaN');
    expect(r.value('c')).toBe(1);
    expect(r.render()).toContain('# TYPE c counter\nc 1\n');
  });

  it('runs collectors before a scrape, skipping failing ones; removes gauge series', async () => {
    const r = new PrometheusRegistry();
    let depth = 0;
    r.addCollector(() => {
      throw new Error('broken');
    });
    r.addCollector(async () => {
      r.gauge('queue_messages', ++depth, { queue: 'mirror' });
    });
    await r.collect();
    await r.collect();
    expect(r.render()).toBe('# TYPE queue_messages gauge\nqueue_messages{queue="mirror"} 2\n');
    r.removeGauge('queue_messages', { queue: 'mirror' });
    expect(r.render()).toBe('');
  });
});

describe('JsonLinesLogger', () => {
  it('writes one JSON object per line with time, level, message and fields', () => {
    const out = sink();
    const log = new JsonLinesLogger({ stream: out.stream, now: () => new Date('2026-01-10T12:00:00Z') });
    log.info('mirrored', { name: 'ghcr.io/acme/basic-auth', size: 12 });
    expect(out.json()).toEqual([
      {
        time: '2026-01-10T12:00:00.000Z',
        level: 'info',
        msg: 'mirrored',
        name: 'ghcr.io/acme/basic-auth',
        size: 12,
      },
    ]);
  });

  it('filters by level', () => {
    const out = sink();
    const log = new JsonLinesLogger({ stream: out.stream, level: 'warn' });
    log.debug('d');
    log.info('i');
    log.warn('w');
    log.error('e');
    expect(out.json().map((l) => l.level)).toEqual(['warn', 'error']);
    const silent = sink();
    new JsonLinesLogger({ stream: silent.stream, level: 'silent' }).error('x');
    expect(silent.lines).toEqual([]);
  });

  it('expands errors, stringifies bigints, cuts cycles but not shared objects', () => {
    const out = sink();
    const log = new JsonLinesLogger({ stream: out.stream });
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const shared = { s: 1 };
    const err = new WasmMirrorError('REGISTRY_UNAVAILABLE', 'down', { cause: new Error('ECONNREFUSED') });
    log.error('failed', { error: err, big: 10n, cyclic, one: shared, two: shared });
    const [line] = out.json();
    expect(line?.big).toBe('10');
    expect(line?.cyclic).toEqual({ a: 1, self: '[Circular]' });
    expect(line?.one).toEqual({ s: 1 });
    expect(line?.two).toEqual({ s: 1 });
    expect(line?.error).toMatchObject({
      name: 'WasmMirrorError',
      message: 'down',
      cause: { message: 'ECONNREFUSED' },
    });
  });

  it('never throws: broken streams, throwing getters', () => {
    const broken = new JsonLinesLogger({
      stream: {
        write() {
          throw new Error('EPIPE');
        },
      } as unknown as Writable,
    });
    expect(() => broken.error('x')).not.toThrow();
    const out = sink();
    const log = new JsonLinesLogger({ stream: out.stream });
    const evil = {
      get boom() {
        throw new Error('getter');
      },
    };
    expect(() => log.info('x', { evil })).not.toThrow();
  });

  it('child loggers add fields and keep the level', () => {
    const out = sink();
    const log = new JsonLinesLogger({ stream: out.stream, level: 'warn', base: { service: 'wasm-mirror' } });
    const child = log.child({ queue: 'mirror' });
    child.info('hidden');
    child.warn('shown');
    expect(out.json()).toEqual([
      expect.objectContaining({ msg: 'shown', service: 'wasm-mirror', queue: 'mirror', level: 'warn' }),
    ]);
  });
});
