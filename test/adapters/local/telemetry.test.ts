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
  it('renders counters and gauges in text format 0.0.4 with the prefix, sorted', async () => {
    // Prepare
    const r = new PrometheusRegistry({ prefix: 'wasm_mirror_' });
    r.describe('webhooks_total', 'Webhook deliveries by source and outcome.');

    // Act
    r.count('webhooks_total', { source: 'local', outcome: 'accepted' });
    r.count('webhooks_total', { outcome: 'accepted', source: 'local' }, 2);
    r.count('webhooks_total', { source: 'local', outcome: 'ignored' });
    r.gauge('manifest_version', 42);
    r.gauge('manifest_version', 43);

    // Assess
    expect(await r.render()).toBe(
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
    expect(await r.value('webhooks_total', { source: 'local', outcome: 'accepted' })).toBe(3);
    expect(PROMETHEUS_CONTENT_TYPE).toBe('text/plain; version=0.0.4; charset=utf-8');
  });

  it('escapes label values and help text, and sanitises names', async () => {
    // Prepare
    const r = new PrometheusRegistry();
    r.describe('odd-name', 'line one\nback\\slash');

    // Act
    r.count('odd-name', { 'repo/path': 'a"b\\c\nd', __reserved: 'x' });

    // Assess
    expect(await r.render()).toBe(
      [
        '# HELP odd_name line one\\nback\\\\slash',
        '# TYPE odd_name counter',
        'odd_name{repo_path="a\\"b\\\\c\\nd",x__reserved="x"} 1',
        '',
      ].join('\n'),
    );
  });

  it('formats special values, ignores negative counter increments and type clashes', async () => {
    // Prepare
    const r = new PrometheusRegistry();

    // Act
    r.gauge('g', Number.POSITIVE_INFINITY, { k: 'inf' });
    r.gauge('g', Number.NEGATIVE_INFINITY, { k: 'minf' });
    r.gauge('g', Number.NaN, { k: 'nan' });
    r.count('c', {}, -1);
    r.count('c');
    r.gauge('c', 5);

    // Assess
    const text = await r.render();
    expect(text).toContain('g{k="inf"} +Inf');
    expect(text).toContain('g{k="minf"} -Inf');
    expect(text).toContain('g{k="nan"} NaN');
    expect(await r.value('c')).toBe(1);
    expect(text).toContain('# TYPE c counter\nc 1\n');
  });

  it('runs collectors before a scrape, skipping failing ones; removes gauge series', async () => {
    // Prepare
    const r = new PrometheusRegistry();
    let depth = 0;
    r.addCollector(() => {
      throw new Error('broken');
    });
    r.addCollector(async () => {
      r.gauge('queue_messages', ++depth, { queue: 'mirror' });
    });

    // Act
    await r.collect();
    await r.collect();
    const scraped = await r.render();
    r.removeGauge('queue_messages', { queue: 'mirror' });

    // Assess
    expect(scraped).toBe('# TYPE queue_messages gauge\nqueue_messages{queue="mirror"} 2\n');
    expect(await r.render()).toBe('');
  });

  it('drops a whole gauge when no labels are given, and starts it afresh on the next value', async () => {
    // Prepare
    const r = new PrometheusRegistry();
    r.gauge('manifest_age_seconds', 5);

    // Act
    r.removeGauge('manifest_age_seconds');
    const removed = await r.render();
    r.gauge('manifest_age_seconds', 7);

    // Assess
    expect(removed).toBe('');
    expect(await r.render()).toBe('# TYPE manifest_age_seconds gauge\nmanifest_age_seconds 7\n');
  });

  it('keeps the label names a metric was first used with, dropping calls with others', async () => {
    // Prepare
    const r = new PrometheusRegistry();
    r.count('syncs_total', { result: 'success' });

    // Act
    expect(() => r.count('syncs_total', { result: 'failure', code: 'TIMEOUT' })).not.toThrow();
    r.count('syncs_total', { result: 'failure' });

    // Assess
    expect(await r.render()).toBe(
      '# TYPE syncs_total counter\nsyncs_total{result="failure"} 1\nsyncs_total{result="success"} 1\n',
    );
  });

  it('observes histograms into default buckets, with _sum and _count per label set', async () => {
    // Prepare
    const r = new PrometheusRegistry({ prefix: 'wasm_mirror_' });
    r.describe('sync_seconds', 'Sync duration.');

    // Act
    r.observe('sync_seconds', 0.2, { result: 'success' });
    r.observe('sync_seconds', 3, { result: 'success' });
    r.observe('sync_seconds', 0.004, { result: 'failure' });
    r.observe('sync_seconds', Number.NaN, { result: 'failure' });
    r.count('sync_seconds');

    // Assess
    const lines = (await r.render()).split('\n');
    expect(lines.slice(0, 2)).toEqual([
      '# HELP wasm_mirror_sync_seconds Sync duration.',
      '# TYPE wasm_mirror_sync_seconds histogram',
    ]);
    const success = lines.filter((l) => l.includes('result="success"'));
    expect(success).toContain('wasm_mirror_sync_seconds_bucket{le="0.1",result="success"} 0');
    expect(success).toContain('wasm_mirror_sync_seconds_bucket{le="0.25",result="success"} 1');
    expect(success).toContain('wasm_mirror_sync_seconds_bucket{le="5",result="success"} 2');
    expect(success).toContain('wasm_mirror_sync_seconds_bucket{le="+Inf",result="success"} 2');
    expect(success.slice(-2)).toEqual([
      'wasm_mirror_sync_seconds_sum{result="success"} 3.2',
      'wasm_mirror_sync_seconds_count{result="success"} 2',
    ]);
    expect(lines).toContain('wasm_mirror_sync_seconds_count{result="failure"} 1');
    // Failure sorts before success, and each label set keeps its buckets in order.
    expect(lines.findIndex((l) => l.includes('failure'))).toBeLessThan(
      lines.findIndex((l) => l.includes('success')),
    );
    const les = success.filter((l) => l.includes('_bucket')).map((l) => /le="([^"]+)"/.exec(l)![1]!);
    expect(les.map(Number)).toEqual([...les.map(Number)].sort((a, b) => a - b));
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
