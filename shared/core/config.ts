/**
 * The config file (docs/config.md): YAML or JSON, parsed once into a frozen, typed
 * object. Unknown keys and bad values are errors that name the key, so a typo never silently
 * turns a check off.
 */
import { readFile } from 'node:fs/promises';
import { parse as parseYaml } from 'yaml';
import * as z from 'zod';
import { parseDuration } from './duration.ts';
import { WasmMirrorError } from './errors.ts';
import { type RetentionPolicy, SOURCE_TYPES, type SourceConfig } from './sources/types.ts';

export type { RetentionPolicy } from './sources/types.ts';

export interface MirrorSettings {
  /** The manifest's `mirror`; agents pin it. */
  name: string;
  /** Lifetime of each signed manifest. */
  manifestTtlMs: number;
  /** Re-sign when less than this is left before expiry. */
  resignBeforeMs: number;
  /** Largest module accepted. */
  maxModuleBytes: number;
  /** Also write the v1 manifest (one document listing everything) for agents not yet on v2. */
  legacyManifest: boolean;
  /** Least time between two published versions: a burst of pushes becomes few versions. */
  publishIntervalMs: number;
  /** Retention for every source that sets none of its own. */
  retention?: RetentionPolicy;
  /** How long a module no manifest lists stays in storage after the last manifest listing it expired. */
  gcGraceMs: number;
}

export interface MirrorConfig {
  mirror: MirrorSettings;
  sources: SourceConfig[];
}

export const DEFAULT_MANIFEST_TTL_MS = 48 * 3600_000;
export const DEFAULT_MAX_MODULE_BYTES = 256 * 1024 * 1024;
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 600;
export const DEFAULT_PUBLISH_INTERVAL_MS = 2000;
export const DEFAULT_GC_GRACE_MS = 24 * 3600_000;

const SOURCE_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const MIRROR_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_./-]{0,255}$/;
const HEADER_NAME = /^[A-Za-z0-9-]{1,64}$/;
// host[:port]: DNS name, IPv4 or bracketed IPv6; no scheme, no path, no credentials.
const REGISTRY_HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/;
// The glob grammar of ./glob.ts over the OCI repository alphabet.
const REPOSITORY_GLOB = /^[a-z0-9*?][a-z0-9._/*?-]*$/;

export const defaultConfig = (): MirrorConfig =>
  freeze({
    mirror: {
      name: 'local-mirror',
      manifestTtlMs: DEFAULT_MANIFEST_TTL_MS,
      resignBeforeMs: DEFAULT_MANIFEST_TTL_MS / 2,
      maxModuleBytes: DEFAULT_MAX_MODULE_BYTES,
      legacyManifest: true,
      publishIntervalMs: DEFAULT_PUBLISH_INTERVAL_MS,
      gcGraceMs: DEFAULT_GC_GRACE_MS,
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
    throw new WasmMirrorError('CONFIG_INVALID', syntaxErrorMessage(text, origin, err), { cause: err });
  }
  const parsed = configSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys[0]!] : issue.path;
    fail(origin, keyPath(path), issueMessage(issue, valueAt(raw, issue.path)));
  }
  const { mirror: m, sources: rawSources } = parsed.data;
  const defaults = defaultConfig().mirror;
  const manifestTtlMs = m.manifestTtl ?? defaults.manifestTtlMs;
  if (manifestTtlMs < 60_000) fail(origin, 'mirror.manifestTtl', 'must be at least 1m');
  const resignBeforeMs = m.resignBefore ?? manifestTtlMs / 2;
  if (resignBeforeMs >= manifestTtlMs)
    fail(origin, 'mirror.resignBefore', 'must be shorter than manifestTtl');
  const sources = rawSources.map((s, i) => toSource(s, `sources[${i}]`, origin));
  const seen = new Set<string>();
  sources.forEach((s, i) => {
    if (seen.has(s.id)) fail(origin, `sources[${i}].id`, `duplicate source id '${s.id}'`);
    seen.add(s.id);
  });
  return freeze({
    mirror: {
      name: m.name ?? defaults.name,
      manifestTtlMs,
      resignBeforeMs,
      maxModuleBytes: m.maxModuleSize ?? defaults.maxModuleBytes,
      legacyManifest: m.legacyManifest ?? defaults.legacyManifest,
      publishIntervalMs: m.publishInterval ?? defaults.publishIntervalMs,
      gcGraceMs: m.gcGrace ?? defaults.gcGraceMs,
      ...(m.retention === undefined ? {} : { retention: toRetention(m.retention) }),
    },
    sources,
  });
}

// ---------------------------------------------------------------------------------------------
// The file's schema (zod). Messages are phrased to follow the key path: "sources[0].insecure must
// be true or false". Unknown keys are errors, so a typo never silently turns a check off.

const text = (pattern?: RegExp) => {
  const base = z
    .string({ error: 'must be a non-empty string' })
    .min(1, { error: 'must be a non-empty string' });
  return pattern === undefined
    ? base
    : base.refine((v) => pattern.test(v), {
        error: (i) => `has an invalid value ${JSON.stringify(i.input)}`,
      });
};
const flag = z.boolean({ error: 'must be true or false' });
const durationValue = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message: `must be a duration like 30s, 15m, 48h (got ${JSON.stringify(v)})`,
    });
    return z.NEVER;
  }
  return ms;
});
/** A duration, or 0 / "0s" to turn the setting off. */
const durationOrZero = z.union([z.string(), z.number()]).transform((v, ctx) => {
  if (v === 0 || (typeof v === 'string' && /^0+(ms|s|m|h|d)?$/.test(v.trim()))) return 0;
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `must be a duration like 2s or 0 (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return ms;
});
const sizeValue = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const n = parseSize(v);
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `must be a size like 256MiB (got ${JSON.stringify(v)})` });
    return z.NEVER;
  }
  return n;
});
const positiveInt = z
  .number({ error: 'must be a positive integer' })
  .int({ error: 'must be a positive integer' })
  .positive({ error: 'must be a positive integer' });
const mapping = { error: 'must be a mapping' };

const tagGlob = /^[A-Za-z0-9_.*?-][A-Za-z0-9_.*?-]{0,127}$/;
const retentionSchema = z.strictObject(
  {
    keepTags: positiveInt.optional(),
    maxAge: durationValue.optional(),
    pin: z.array(text(tagGlob), { error: 'must be a list of tag globs' }).optional(),
  },
  mapping,
);

function toRetention(r: {
  keepTags?: number | undefined;
  maxAge?: number | undefined;
  pin?: string[] | undefined;
}): RetentionPolicy {
  const out: RetentionPolicy = {};
  if (r.keepTags !== undefined) out.keepTags = r.keepTags;
  if (r.maxAge !== undefined) out.maxAgeMs = r.maxAge;
  if (r.pin !== undefined) out.pin = r.pin;
  return out;
}

const sourceSchema = z.strictObject(
  {
    id: text(SOURCE_ID),
    type: z.enum(SOURCE_TYPES, { error: `must be one of ${SOURCE_TYPES.join(', ')}` }),
    registry: text(REGISTRY_HOST),
    insecure: flag.optional(),
    repositories: z
      .array(text(REPOSITORY_GLOB), {
        error: 'must be a non-empty list of repository globs (use "**" for all)',
      })
      .min(1, { error: 'must be a non-empty list of repository globs (use "**" for all)' }),
    webhookSecretEnv: text(ENV_NAME).optional(),
    webhookHeader: text(HEADER_NAME).optional(),
    credentials: z
      .strictObject({ usernameEnv: text(ENV_NAME), passwordEnv: text(ENV_NAME) }, mapping)
      .optional(),
    reconcileInterval: durationValue.optional(),
    rateLimitPerMinute: positiveInt.optional(),
    retention: retentionSchema
      .extend({
        overrides: z
          .array(retentionSchema.extend({ repositories: z.array(text(REPOSITORY_GLOB)).min(1) }), {
            error: 'must be a list',
          })
          .optional(),
      })
      .optional(),
  },
  mapping,
);

const configSchema = z.strictObject(
  {
    mirror: z
      .strictObject(
        {
          name: text(MIRROR_NAME).optional(),
          manifestTtl: durationValue.optional(),
          resignBefore: durationValue.optional(),
          maxModuleSize: sizeValue.optional(),
          legacyManifest: flag.optional(),
          publishInterval: durationOrZero.optional(),
          gcGrace: durationOrZero.optional(),
          retention: retentionSchema.optional(),
        },
        mapping,
      )
      .default({}),
    sources: z.array(sourceSchema, { error: 'must be a list' }).default([]),
  },
  mapping,
);

function toSource(s: z.infer<typeof sourceSchema>, at: string, origin: string): SourceConfig {
  const source: SourceConfig = {
    id: s.id,
    type: s.type,
    registry: s.registry.toLowerCase(),
    insecure: s.insecure ?? false,
    repositories: s.repositories,
    rateLimitPerMinute: s.rateLimitPerMinute ?? DEFAULT_RATE_LIMIT_PER_MINUTE,
  };
  if (s.webhookSecretEnv !== undefined) source.webhookSecretEnv = s.webhookSecretEnv;
  else if (s.type !== 'ecr') {
    fail(
      origin,
      `${at}.webhookSecretEnv`,
      'is required: name the environment variable holding the webhook secret',
    );
  }
  if (s.webhookHeader !== undefined) source.webhookHeader = s.webhookHeader.toLowerCase();
  if (s.credentials !== undefined) source.credentials = { ...s.credentials };
  if (s.retention !== undefined) {
    source.retention = toRetention(s.retention);
    if (s.retention.overrides !== undefined) {
      source.retention.overrides = s.retention.overrides.map((o) => ({
        ...toRetention(o),
        repositories: o.repositories,
      }));
    }
  }
  if (s.reconcileInterval !== undefined) {
    if (s.reconcileInterval < 10_000) fail(origin, `${at}.reconcileInterval`, 'must be at least 10s');
    source.reconcileIntervalMs = s.reconcileInterval;
  }
  return source;
}

/** `sources[0].credentials.usernameEnv` from a zod path. */
function keyPath(path: readonly PropertyKey[]): string {
  return path
    .map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`))
    .join('');
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let value = root;
  for (const key of path) value = (value as Record<PropertyKey, unknown> | null | undefined)?.[key];
  return value;
}

function issueMessage(issue: z.core.$ZodIssue, value: unknown): string {
  if (issue.code === 'unrecognized_keys') {
    return `is not a known key (expected one of ${Object.keys(knownKeysAt(issue.path)).join(', ')})`;
  }
  // A key that is absent altogether: say it is required rather than what type it should have.
  if (issue.code === 'invalid_type' && value === undefined) return `is required (${issue.message})`;
  return issue.message;
}

/** The keys the schema knows at `path`, found by walking the schema itself, so every mapping is covered. */
function knownKeysAt(path: readonly PropertyKey[]): Record<string, unknown> {
  let schema = objectAt(configSchema);
  for (const key of path) {
    if (typeof key !== 'string') continue;
    const next = schema?.shape[key];
    schema = next === undefined ? undefined : objectAt(next as z.ZodType);
  }
  return schema?.shape ?? configSchema.shape;
}

/** The object schema under optional / default / array / pipe wrappers, if there is one. */
function objectAt(schema: z.ZodType): z.ZodObject | undefined {
  let current: z.ZodType | undefined = schema;
  for (let depth = 0; current !== undefined && depth < 8; depth++) {
    if (current instanceof z.ZodObject) return current;
    const def = current._zod.def as { innerType?: z.ZodType; element?: z.ZodType; in?: z.ZodType };
    current = def.innerType ?? def.element ?? def.in;
  }
  return undefined;
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

/**
 * `FILE: line 3, column 5: not valid YAML or JSON: <reason>`, then the line with a caret under the
 * column: a syntax error says where it is, not only what.
 */
function syntaxErrorMessage(text: string, origin: string, err: unknown): string {
  const reason = (err as Error).message;
  const offset = (err as { pos?: [number, number] }).pos?.[0];
  if (offset === undefined) return `${origin}: not valid YAML or JSON: ${reason}`;
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const lineEnd = text.indexOf('\n', lineStart);
  const lineText = text.slice(lineStart, lineEnd === -1 ? undefined : lineEnd).replace(/\r$/, '');
  const line = text.slice(0, lineStart).split('\n').length;
  const column = offset - lineStart + 1;
  const gutter = String(line).length;
  // Tabs stay tabs under the caret, so it lines up wherever the line is shown.
  const pad = lineText.slice(0, column - 1).replace(/[^\t]/g, ' ');
  return [
    `${origin}: line ${line}, column ${column}: not valid YAML or JSON: ${reason}`,
    `  ${line} | ${lineText}`,
    `  ${' '.repeat(gutter)} | ${pad}^`,
  ].join('\n');
}

function fail(origin: string, key: string, message: string): never {
  throw new WasmMirrorError('CONFIG_INVALID', `${origin}: ${key || '(top level)'} ${message}`);
}

function freeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) freeze(v);
    Object.freeze(value);
  }
  return value;
}
