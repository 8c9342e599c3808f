/** Shared builders for webhook parser tests: sources, requests, fixtures and a seeded fuzzer. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { isWasmMirrorError, WasmMirrorError } from '../../shared/core/errors.ts';
import { matchesAny } from '../../shared/core/glob.ts';
import type {
  ParsedDelivery,
  SourceConfig,
  SourceType,
  WebhookParser,
  WebhookRequest,
} from '../../shared/core/sources/types.ts';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'webhooks');

export const RECEIVED_AT = new Date('2026-01-10T12:00:00.000Z');

export function fixture(type: string, name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(FIXTURES, type, name)));
}

export function fixtureJson<T = unknown>(type: string, name: string): T {
  return JSON.parse(readFileSync(join(FIXTURES, type, name), 'utf8')) as T;
}

export function source(type: SourceType, overrides: Partial<SourceConfig> = {}): SourceConfig {
  return {
    id: `${type}-src`,
    type,
    registry: '127.0.0.1:5000',
    insecure: true,
    repositories: ['plugins/**'],
    rateLimitPerMinute: 600,
    ...overrides,
  };
}

export function request(
  body: Uint8Array | string | object,
  headers: Record<string, string> = {},
  extra: Partial<WebhookRequest> = {},
): WebhookRequest {
  const bytes =
    body instanceof Uint8Array
      ? body
      : new TextEncoder().encode(typeof body === 'string' ? body : JSON.stringify(body));
  const lower: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v;
  return { headers: lower, body: bytes, receivedAt: RECEIVED_AT, ...extra };
}

export function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof WasmMirrorError) return err.code;
    throw err;
  }
  throw new Error('expected a WasmMirrorError, nothing was thrown');
}

/** `ok` when `fn` returns, else the code of the WasmMirrorError it throws. */
export function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof WasmMirrorError) return err.code;
    throw err;
  }
}

export function reasons(delivery: ParsedDelivery): string[] {
  return delivery.ignored.map((i) => i.reason);
}

// ---------------------------------------------------------------------------------------------
// Seeded fuzzing: no dependency, reproducible from the seed printed on failure.

export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [
  '"evil.example.net"',
  '"localhost:5000"',
  '"127.0.0.1:5000"',
  '"push"',
  '"sha256:0000000000000000000000000000000000000000000000000000000000000000"',
  '"plugins/x"',
  '"other/x"',
  '"../../etc"',
  '"UPPER/Case"',
  '"application/vnd.oci.image.manifest.v1+json"',
  '"PUSH_ARTIFACT"',
  '"__proto__"',
  'null',
  '[]',
  '{}',
  '1e999',
  '"\\u0000"',
  '"a:b"',
  '"ghcr.io"',
];

/** Mutates a JSON text: byte flips, token splices, truncation, duplication, deep nesting. */
export function mutate(text: string, rand: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const at = () => Math.floor(rand() * (text.length + 1));
  switch (Math.floor(rand() * 9)) {
    case 0: {
      const i = at();
      return text.slice(0, i) + String.fromCharCode(Math.floor(rand() * 128)) + text.slice(i + 1);
    }
    case 1:
      return text.slice(0, at());
    case 2: {
      // Replace a string literal with an interesting value.
      const strings = [...text.matchAll(/"(?:[^"\\]|\\.)*"/g)];
      if (strings.length === 0) return text;
      const m = pick(strings);
      return text.slice(0, m.index) + pick(INTERESTING) + text.slice(m.index + m[0].length);
    }
    case 3: {
      const i = at();
      const j = at();
      return text.slice(0, Math.min(i, j)) + text.slice(Math.max(i, j));
    }
    case 4:
      return '['.repeat(Math.floor(rand() * 200)) + text;
    case 5: {
      const i = at();
      return text.slice(0, i) + pick(INTERESTING) + text.slice(i);
    }
    case 6:
      // Duplicate a key by repeating an object member.
      return text.replace(/\{\s*("[^"]+"\s*:\s*"[^"]*")/, '{$1,$1');
    case 7: {
      const strings = [...text.matchAll(/"(?:[^"\\]|\\.)*"/g)];
      if (strings.length === 0) return text;
      const m = pick(strings);
      const replacement = JSON.stringify(
        pick(['', 'a'.repeat(300), 'Plugins/x', 'plugins//x', 'plugins/x:tag', 'sha256:abc', ' ', '-tag']),
      );
      return text.slice(0, m.index) + replacement + text.slice(m.index + m[0].length);
    }
    default:
      return text.replace(/"(?:[^"\\]|\\.)*"/, pick(INTERESTING));
  }
}

export interface FuzzCase {
  body: string;
  headers: Record<string, string>;
  pathToken?: string;
}

/**
 * Runs `iterations` mutated deliveries through a parser. Properties: the only thing thrown is a
 * WasmMirrorError with a WEBHOOK_* code, and every job names source.registry and an allowed repo.
 */
export function fuzzParser(
  parser: WebhookParser,
  src: SourceConfig,
  secret: string,
  seeds: FuzzCase[],
  options: { iterations?: number; seed?: number; sign?: (c: FuzzCase) => FuzzCase } = {},
): { jobs: number; rejected: number; ignored: number } {
  const seed = options.seed ?? 0xc0ffee;
  const rand = prng(seed);
  const stats = { jobs: 0, rejected: 0, ignored: 0 };
  const iterations = options.iterations ?? 3000;
  // Every iteration runs: a time budget would silently shrink the seeded case list on a slow machine.
  for (let i = 0; i < iterations; i++) {
    const base = seeds[Math.floor(rand() * seeds.length)]!;
    let body = base.body;
    const rounds = 1 + Math.floor(rand() * 3);
    for (let r = 0; r < rounds; r++) body = mutate(body, rand);
    let c: FuzzCase = { ...base, body, headers: { ...base.headers } };
    if (options.sign && rand() < 0.7) c = options.sign(c);
    const headerRoll = rand();
    if (headerRoll < 0.05) c.headers = {};
    else if (headerRoll < 0.1) {
      const keys = Object.keys(c.headers);
      const k = keys[Math.floor(rand() * keys.length)];
      if (k !== undefined) c.headers[k] = mutate(c.headers[k]!, rand);
    } else if (headerRoll < 0.12)
      c.headers = Object.fromEntries(Object.entries(c.headers).map(([k, v]) => [k.toUpperCase(), v]));
    const extra: Partial<WebhookRequest> = {};
    if (c.pathToken !== undefined) extra.pathToken = rand() < 0.05 ? `${c.pathToken}x` : c.pathToken;
    try {
      const out = parser(src, secret, request(c.body, c.headers, extra));
      for (const job of out.jobs) {
        if (
          job.registry !== src.registry ||
          job.sourceId !== src.id ||
          !matchesAny(src.repositories, job.repository)
        ) {
          throw new Error(`seed ${seed} iteration ${i}: bad job ${JSON.stringify(job)}`);
        }
      }
      stats.jobs += out.jobs.length;
      stats.ignored += out.ignored.length;
    } catch (err) {
      if (!isWasmMirrorError(err) || !err.code.startsWith('WEBHOOK_')) {
        throw new Error(
          `seed ${seed} iteration ${i}: unexpected ${String(err)} for body ${JSON.stringify(c.body)}`,
        );
      }
      expect(err.message).not.toContain(secret);
      stats.rejected++;
    }
  }
  return stats;
}
