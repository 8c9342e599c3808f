/**
 * The manifest v1 payload: building it for the publisher and checking it, strictly, for the
 * agent. The same checker runs on both sides so a publisher can never sign what agents refuse.
 */
import {
  MANIFEST_TYPE,
  type ManifestModule,
  type ManifestPayload,
  type ModuleRecord,
  SHA256_DIGEST,
  SHA256_HEX,
  type WasmFormat,
  type WasmKind,
} from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';

const PAYLOAD_FIELDS = ['type', 'mirror', 'version', 'issuedAt', 'expiresAt', 'modules'] as const;
const MODULE_REQUIRED = ['name', 'tag', 'ociDigest', 'sha256', 'size', 'format', 'mirroredAt'] as const;
const MODULE_OPTIONAL = ['kind', 'abi'] as const;
const FORMATS: readonly WasmFormat[] = ['wasm-artifact', 'compat-image', 'cncf-wasm', 'wasm-artifact-1layer'];
const KINDS: readonly WasmKind[] = ['module', 'component'];
/** RFC 3339 UTC timestamps as Date#toISOString prints them, optional fraction. */
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?Z$/;
const MAX_TEXT = 1024;

/** Module order in the manifest: by name, then tag, comparing UTF-16 code units. */
export function compareModules(a: { name: string; tag: string }, b: { name: string; tag: string }): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  if (a.tag !== b.tag) return a.tag < b.tag ? -1 : 1;
  return 0;
}

export function parseIsoTime(value: string): number | undefined {
  if (!ISO_UTC.test(value)) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) return undefined;
  // Date.parse rolls over impossible dates (Feb 30); reject them by round-tripping the date part.
  if (new Date(ms).toISOString().slice(0, 19) !== value.slice(0, 19)) return undefined;
  return ms;
}

function schemaError(message: string): WasmMirrorError {
  return new WasmMirrorError('SCHEMA_ERROR', `manifest payload: ${message}`);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function exactFields(
  obj: Record<string, unknown>,
  required: readonly string[],
  optional: readonly string[],
  where: string,
) {
  for (const key of Object.keys(obj)) {
    if (!required.includes(key) && !optional.includes(key))
      throw schemaError(`${where} has unknown field "${key}"`);
  }
  for (const key of required) {
    if (!Object.hasOwn(obj, key)) throw schemaError(`${where} is missing "${key}"`);
  }
}

function text(obj: Record<string, unknown>, key: string, where: string, allowEmpty = false): string {
  const v = obj[key];
  if (typeof v !== 'string') throw schemaError(`${where}.${key} must be a string`);
  if (!allowEmpty && v.length === 0) throw schemaError(`${where}.${key} must not be empty`);
  if (v.length > MAX_TEXT) throw schemaError(`${where}.${key} is too long`);
  return v;
}

function count(obj: Record<string, unknown>, key: string, where: string): number {
  const v = obj[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw schemaError(`${where}.${key} must be a non-negative safe integer`);
  }
  return v;
}

function time(obj: Record<string, unknown>, key: string, where: string): string {
  const v = text(obj, key, where);
  if (parseIsoTime(v) === undefined) throw schemaError(`${where}.${key} must be an ISO 8601 UTC timestamp`);
  return v;
}

/** Checks a parsed payload against manifest v1 and returns it typed; SCHEMA_ERROR otherwise. */
export function validatePayload(value: unknown): ManifestPayload {
  if (!isPlainObject(value)) throw schemaError('must be an object');
  exactFields(value, PAYLOAD_FIELDS, [], 'payload');
  if (value.type !== MANIFEST_TYPE) throw schemaError(`type must be "${MANIFEST_TYPE}"`);
  const mirror = text(value, 'mirror', 'payload');
  const version = count(value, 'version', 'payload');
  const issuedAt = time(value, 'issuedAt', 'payload');
  const expiresAt = time(value, 'expiresAt', 'payload');
  if (parseIsoTime(expiresAt)! <= parseIsoTime(issuedAt)!)
    throw schemaError('expiresAt must be after issuedAt');
  if (!Array.isArray(value.modules)) throw schemaError('modules must be an array');
  const modules = validateModuleList(value.modules, 'modules');
  return { type: MANIFEST_TYPE, mirror, version, issuedAt, expiresAt, modules };
}

/** A sorted list of entries, each (name, tag) once: a v1 payload's `modules` or a v2 bin's. */
export function validateModuleList(list: unknown[], at: string): ManifestModule[] {
  const modules: ManifestModule[] = [];
  list.forEach((raw: unknown, i: number) => {
    const m = validateModule(raw, `${at}[${i}]`);
    const prev = modules[i - 1];
    if (prev !== undefined && compareModules(prev, m) >= 0) {
      throw schemaError(`${at}[${i}] is out of order or repeats (name, tag) ${m.name}:${m.tag}`);
    }
    modules.push(m);
  });
  return modules;
}

/** One manifest entry, exactly v1's fields. */
export function validateModule(raw: unknown, where: string): ManifestModule {
  if (!isPlainObject(raw)) throw schemaError(`${where} must be an object`);
  exactFields(raw, MODULE_REQUIRED, MODULE_OPTIONAL, where);
  const m: ManifestModule = {
    name: text(raw, 'name', where),
    tag: text(raw, 'tag', where, true),
    ociDigest: text(raw, 'ociDigest', where),
    sha256: text(raw, 'sha256', where),
    size: count(raw, 'size', where),
    format: raw.format as WasmFormat,
    mirroredAt: time(raw, 'mirroredAt', where),
  };
  if (!SHA256_DIGEST.test(m.ociDigest))
    throw schemaError(`${where}.ociDigest must be sha256:<64 lowercase hex>`);
  if (!SHA256_HEX.test(m.sha256)) throw schemaError(`${where}.sha256 must be 64 lowercase hex`);
  if (!FORMATS.includes(m.format)) throw schemaError(`${where}.format must be one of ${FORMATS.join(', ')}`);
  if (Object.hasOwn(raw, 'kind')) {
    if (!KINDS.includes(raw.kind as WasmKind))
      throw schemaError(`${where}.kind must be one of ${KINDS.join(', ')}`);
    m.kind = raw.kind as WasmKind;
  }
  if (Object.hasOwn(raw, 'abi')) m.abi = text(raw, 'abi', where);
  return m;
}

/** Shared field checks for the v2 documents (index, pages, bins). */
export const fieldChecks = { isPlainObject, exactFields, text, count, time, schemaError };

export interface BuildPayloadInput {
  mirror: string;
  version: number;
  /** Defaults to now. */
  issuedAt?: Date | string;
  /** Absolute expiry; or give ttlMs. */
  expiresAt?: Date | string;
  /** Lifetime from issuedAt (default 48 h). */
  ttlMs?: number;
  modules: readonly (ModuleRecord | ManifestModule)[];
}

export const DEFAULT_MANIFEST_TTL_MS = 48 * 3600 * 1000;

/** A manifest entry from a mirror result: fields copied explicitly, so no stray property gets signed. */
export function toManifestModule(r: ModuleRecord | ManifestModule): ManifestModule {
  const m: ManifestModule = {
    name: r.name,
    tag: r.tag,
    ociDigest: r.ociDigest,
    sha256: r.sha256,
    size: r.size,
    format: r.format,
    mirroredAt: r.mirroredAt,
  };
  if (r.kind !== undefined) m.kind = r.kind;
  if (r.abi !== undefined) m.abi = r.abi;
  return m;
}

/**
 * Builds a valid payload: modules sorted by (name, tag), fields copied explicitly (no stray
 * properties end up signed), undefined optionals dropped. Throws SCHEMA_ERROR on bad input,
 * including two records with the same (name, tag).
 */
export function buildPayload(input: BuildPayloadInput): ManifestPayload {
  const issued = input.issuedAt === undefined ? new Date() : new Date(input.issuedAt);
  const expires =
    input.expiresAt !== undefined
      ? new Date(input.expiresAt)
      : new Date(issued.getTime() + (input.ttlMs ?? DEFAULT_MANIFEST_TTL_MS));
  if (Number.isNaN(issued.getTime()) || Number.isNaN(expires.getTime()))
    throw schemaError('invalid timestamp');
  const modules = input.modules.map(toManifestModule).sort(compareModules);
  return validatePayload({
    type: MANIFEST_TYPE,
    mirror: input.mirror,
    version: input.version,
    issuedAt: issued.toISOString(),
    expiresAt: expires.toISOString(),
    modules,
  });
}
