/**
 * RFC 8785 JSON Canonicalization Scheme. The signed payload is exactly these bytes, so the
 * serialiser refuses anything JCS cannot represent instead of guessing (undefined, NaN, bigint,
 * lone surrogates, non-plain objects).
 */

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

export function canonicalize(value: unknown): string {
  const parts: string[] = [];
  write(value, parts, '$');
  return parts.join('');
}

export function canonicalizeToBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalize(value));
}

function write(value: unknown, out: string[], path: string): void {
  if (value === null) {
    out.push('null');
    return;
  }
  switch (typeof value) {
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`JCS: ${path} is not a finite number`);
      // ECMAScript Number-to-String is exactly JCS's number format; -0 prints as 0.
      out.push(Object.is(value, -0) ? '0' : String(value));
      return;
    case 'string':
      out.push(quote(value, path));
      return;
    case 'object': {
      if (Array.isArray(value)) {
        out.push('[');
        value.forEach((item, i) => {
          if (i > 0) out.push(',');
          write(item, out, `${path}[${i}]`);
        });
        out.push(']');
        return;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) {
        throw new TypeError(`JCS: ${path} is not a plain object`);
      }
      const record = value as Record<string, unknown>;
      // Default sort compares UTF-16 code units, which is what RFC 8785 section 3.2.3 asks for.
      const keys = Object.keys(record).sort();
      out.push('{');
      keys.forEach((key, i) => {
        if (i > 0) out.push(',');
        out.push(quote(key, path), ':');
        write(record[key], out, `${path}.${key}`);
      });
      out.push('}');
      return;
    }
    default:
      throw new TypeError(`JCS: ${path} has unsupported type ${typeof value}`);
  }
}

function quote(text: string, path: string): string {
  if (LONE_SURROGATE.test(text)) throw new TypeError(`JCS: ${path} contains a lone surrogate`);
  // With lone surrogates excluded, JSON.stringify's escaping is JCS's (section 3.2.2.2).
  return JSON.stringify(text);
}
