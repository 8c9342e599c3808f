/**
 * Reading a webhook body: the size cap, strict UTF-8 and strict JSON (see ../strict-json.ts) with
 * errors mapped to WEBHOOK_MALFORMED, and typed accessors for untrusted payload fields.
 */
import { WasmMirrorError } from '../errors.ts';
import {
  decodeUtf8Strict,
  type JsonObject,
  type JsonValue,
  parseStrictJson,
  StrictJsonError,
} from '../strict-json.ts';

export type { JsonObject, JsonValue } from '../strict-json.ts';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const MAX_JSON_DEPTH = 32;

export function malformed(message: string): WasmMirrorError {
  return new WasmMirrorError('WEBHOOK_MALFORMED', message);
}

export function checkBodySize(body: Uint8Array, maxBytes = DEFAULT_MAX_BODY_BYTES): void {
  if (body.byteLength > maxBytes) {
    throw new WasmMirrorError('WEBHOOK_TOO_LARGE', `webhook body exceeds ${maxBytes} bytes`);
  }
}

// Objects have a null prototype so a missing field never reads an inherited member. Bodies carry
// free text we never read (descriptions, commit messages), so a leading BOM or a lone surrogate
// there is no reason to drop a push; the fields that decide a job are checked against the OCI
// grammar.

function decodeUtf8(body: Uint8Array): string {
  try {
    return decodeUtf8Strict(body, { stripBom: true });
  } catch {
    throw malformed('body is not valid UTF-8');
  }
}

export function parseJsonStrict(body: Uint8Array | string, maxDepth = MAX_JSON_DEPTH): JsonValue {
  const text = typeof body === 'string' ? body : decodeUtf8(body);
  try {
    return parseStrictJson(text, { maxDepth, nullPrototype: true, allowLoneSurrogates: true });
  } catch (err) {
    if (err instanceof StrictJsonError) {
      throw malformed(`invalid JSON at offset ${err.position}: ${err.reason}`);
    }
    throw err;
  }
}

// Typed accessors: payload fields are untrusted, so every read checks the type.

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asObject(value: unknown, what: string): JsonObject {
  if (!isObject(value)) throw malformed(`${what} is not an object`);
  return value;
}

export function asArray(value: unknown, what: string): JsonValue[] {
  if (!Array.isArray(value)) throw malformed(`${what} is not an array`);
  return value;
}

export function str(obj: JsonObject | undefined, key: string): string | undefined {
  const v = obj?.[key];
  return typeof v === 'string' ? v : undefined;
}

export function obj(parent: JsonObject | undefined, key: string): JsonObject | undefined {
  const v = parent?.[key];
  return isObject(v) ? v : undefined;
}
