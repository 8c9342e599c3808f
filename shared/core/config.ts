/**
 * The config file (DESIGN.md, "Config file"): YAML or JSON, parsed once into a frozen, typed
 * object. Unknown keys and bad values are errors that name the key, so a typo never silently
 * turns a check off.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import { WasmMirrorError } from './errors.ts';
import { SOURCE_TYPES, type SourceConfig, type SourceType } from './sources/types.ts';

export interface MirrorSettings {
  /** The manifest's `mirror`; agents pin it. */
  name: string;
  /** Lifetime of each signed manifest. */
  manifestTtlMs: number;
  /** Re-sign when less than this is left before expiry. */
  resignBeforeMs: number;
  /** Largest module accepted. */
  maxModuleBytes: number;
}

export interface MirrorConfig {
  mirror: MirrorSettings;
  sources: SourceConfig[];
}

export const DEFAULT_MANIFEST_TTL_MS = 48 * 3600_000;
export const DEFAULT_MAX_MODULE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 600;

const SOURCE_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const MIRROR_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_./-]{0,255}$/;
const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/;
// host[:port]: DNS name, IPv4 or bracketed IPv6; no scheme, no path, no credentials.
const REGISTRY_HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
const REPOSITORY_GLOB = /^[a-z0-9*][a-z0-9._/*-]*$/;

export const defaultConfig = (): MirrorConfig =>
  freeze({
    mirror: {
      name: 'local-mirror',
      manifestTtlMs: DEFAULT_MANIFEST_TTL_MS,
      resignBeforeMs: DEFAULT_MANIFEST_TTL_MS / 2,
      maxModuleBytes: DEFAULT_MAX_MODULE_BYTES,
    },
    sources: [],
  });

export async function loadConfigFile(path: string): Promise<MirrorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new WasmMirrorError(
      'CONFIG_INVALID',
      `cannot read config file ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  return parseConfig(text, path);
}

export function parseConfig(text: string, origin = 'config'): MirrorConfig {
  let raw: unknown;
  try {
    // JSON is YAML; uniqueKeys rejects duplicates, a low alias cap refuses "billion laughs".
    raw = parseYaml(text, { uniqueKeys: true, maxAliasCount: 16, prettyErrors: false });
  } catch (err) {
    throw new WasmMirrorError(
      'CONFIG_INVALID',
      `${origin}: not valid YAML or JSON: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const root = object(raw ?? {}, '', origin);
  allowOnly(root, ['mirror', 'sources'], '', origin);
  const defaults = defaultConfig().mirror;
  const m = object(root.mirror ?? {}, 'mirror', origin);
  allowOnly(m, ['name', 'manifestTtl', 'resignBefore', 'maxModuleSize'], 'mirror', origin);
  const name = m.name === undefined ? defaults.name : string(m.name, 'mirror.name', origin, MIRROR_NAME);
  const manifestTtlMs =
    m.manifestTtl === undefined
      ? defaults.manifestTtlMs
      : duration(m.manifestTtl, 'mirror.manifestTtl', origin);
  if (manifestTtlMs < 60_000) fail(origin, 'mirror.manifestTtl', 'must be at least 1m');
  const resignBeforeMs =
    m.resignBefore === undefined
      ? manifestTtlMs / 2
      : duration(m.resignBefore, 'mirror.resignBefore', origin);
  if (resignBeforeMs >= manifestTtlMs)
    fail(origin, 'mirror.resignBefore', 'must be shorter than manifestTtl');
  const maxModuleBytes =
    m.maxModuleSize === undefined
      ? defaults.maxModuleBytes
      : size(m.maxModuleSize, 'mirror.maxModuleSize', origin);

  const sourcesRaw = root.sources ?? [];
  if (!Array.isArray(sourcesRaw)) fail(origin, 'sources', 'must be a list');
  const sources = (sourcesRaw as unknown[]).map((s, i) => parseSource(s, `sources[${i}]`, origin));
  const seen = new Set<string>();
  sources.forEach((s, i) => {
    if (seen.has(s.id)) fail(origin, `sources[${i}].id`, `duplicate source id '${s.id}'`);
    seen.add(s.id);
  });
  return freeze({ mirror: { name, manifestTtlMs, resignBeforeMs, maxModuleBytes }, sources });
}

function parseSource(raw: unknown, at: string, origin: string): SourceConfig {
  const s = object(raw, at, origin);
  allowOnly(
    s,
    [
      'id',
      'type',
      'registry',
      'insecure',
      'repositories',
      'webhookSecretEnv',
      'webhookHeader',
      'credentials',
      'reconcileInterval',
      'rateLimitPerMinute',
    ],
    at,
    origin,
  );
  const id = string(s.id, `${at}.id`, origin, SOURCE_ID);
  const type = string(s.type, `${at}.type`, origin) as SourceType;
  if (!SOURCE_TYPES.includes(type)) fail(origin, `${at}.type`, `must be one of ${SOURCE_TYPES.join(', ')}`);
  const registry = string(s.registry, `${at}.registry`, origin, REGISTRY_HOST).toLowerCase();
  const insecure = s.insecure === undefined ? false : boolean(s.insecure, `${at}.insecure`, origin);
  if (!Array.isArray(s.repositories) || s.repositories.length === 0) {
    fail(origin, `${at}.repositories`, 'must be a non-empty list of repository globs (use "**" for all)');
  }
  const repositories = (s.repositories as unknown[]).map((r, i) =>
    string(r, `${at}.repositories[${i}]`, origin, REPOSITORY_GLOB),
  );
  const source: SourceConfig = {
    id,
    type,
    registry,
    insecure,
    repositories,
    rateLimitPerMinute:
      s.rateLimitPerMinute === undefined
        ? DEFAULT_RATE_LIMIT_PER_MINUTE
        : positiveInt(s.rateLimitPerMinute, `${at}.rateLimitPerMinute`, origin),
  };
  if (s.webhookSecretEnv !== undefined) {
    source.webhookSecretEnv = string(s.webhookSecretEnv, `${at}.webhookSecretEnv`, origin, ENV_NAME);
  } else if (type !== 'ecr') {
    fail(
      origin,
      `${at}.webhookSecretEnv`,
      'is required: name the environment variable holding the webhook secret',
    );
  }
  if (s.webhookHeader !== undefined) {
    source.webhookHeader = string(s.webhookHeader, `${at}.webhookHeader`, origin, HEADER_NAME).toLowerCase();
  }
  if (s.credentials !== undefined) {
    const c = object(s.credentials, `${at}.credentials`, origin);
    allowOnly(c, ['usernameEnv', 'passwordEnv'], `${at}.credentials`, origin);
    source.credentials = {
      usernameEnv: string(c.usernameEnv, `${at}.credentials.usernameEnv`, origin, ENV_NAME),
      passwordEnv: string(c.passwordEnv, `${at}.credentials.passwordEnv`, origin, ENV_NAME),
    };
  }
  if (s.reconcileInterval !== undefined) {
    source.reconcileIntervalMs = duration(s.reconcileInterval, `${at}.reconcileInterval`, origin);
    if (source.reconcileIntervalMs < 10_000) fail(origin, `${at}.reconcileInterval`, 'must be at least 10s');
  }
  return source;
}

/** Parses `90s`, `15m`, `48h`, `2d`, `1h30m` (or a number of milliseconds). */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const re = /(\d+)(ms|s|m|h|d)/y;
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 };
  let total = 0;
  let pos = 0;
  const text = value.trim();
  if (text === '') return undefined;
  while (pos < text.length) {
    re.lastIndex = pos;
    const match = re.exec(text);
    if (match === null) return undefined;
    total += Number(match[1]) * unit[match[2]!]!;
    pos = re.lastIndex;
  }
  return total > 0 && Number.isSafeInteger(total) ? total : undefined;
}

/** Parses `256MiB`, `10MB`, `512KiB` or a number of bytes. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value > 0 ? value : undefined;
  const match = /^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$/.exec(value.trim());
  if (match === null) return undefined;
  const unit: Record<string, number> = {
    B: 1,
    KB: 1e3,
    KiB: 1024,
    MB: 1e6,
    MiB: 1024 ** 2,
    GB: 1e9,
    GiB: 1024 ** 3,
  };
  const n = Number(match[1]) * unit[match[2] ?? 'B']!;
  return n > 0 && Number.isSafeInteger(n) ? n : undefined;
}

function fail(origin: string, key: string, message: string): never {
  throw new WasmMirrorError('CONFIG_INVALID', `${origin}: ${key || '(top level)'} ${message}`);
}

function object(v: unknown, at: string, origin: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(origin, at, 'must be a mapping');
  return v as Record<string, unknown>;
}

function allowOnly(o: Record<string, unknown>, keys: string[], at: string, origin: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k))
      fail(origin, at ? `${at}.${k}` : k, `is not a known key (expected one of ${keys.join(', ')})`);
  }
}

function string(v: unknown, at: string, origin: string, pattern?: RegExp): string {
  if (typeof v !== 'string' || v === '') fail(origin, at, 'must be a non-empty string');
  if (pattern !== undefined && !pattern.test(v))
    fail(origin, at, `has an invalid value ${JSON.stringify(v)}`);
  return v;
}

function boolean(v: unknown, at: string, origin: string): boolean {
  if (typeof v !== 'boolean') fail(origin, at, 'must be true or false');
  return v;
}

function positiveInt(v: unknown, at: string, origin: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
    fail(origin, at, 'must be a positive integer');
  return v;
}

function duration(v: unknown, at: string, origin: string): number {
  const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : undefined;
  if (ms === undefined) fail(origin, at, `must be a duration like 30s, 15m, 48h (got ${JSON.stringify(v)})`);
  return ms;
}

function size(v: unknown, at: string, origin: string): number {
  const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : undefined;
  if (n === undefined) fail(origin, at, `must be a size like 256MiB (got ${JSON.stringify(v)})`);
  return n;
}

function freeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) freeze(v);
    Object.freeze(value);
  }
  return value;
}
