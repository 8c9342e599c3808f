/**
 * A strict RFC 8259 parser for untrusted input: signed manifests, key files, agent state and
 * webhook bodies. JSON.parse silently keeps the last of duplicate keys and recurses without
 * limit; two readers that disagree on which duplicate wins is a classic signature bypass (or a
 * payload that shows one value to a reviewer and another to us), so duplicates are an error
 * here, as are a byte order mark and nesting deeper than `maxDepth`. Callers map
 * StrictJsonError to their own error code.
 */

/** Plain JSON value as the parser returns it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export class StrictJsonError extends Error {
  override readonly name = 'StrictJsonError';
  /** What is wrong, without the offset. */
  readonly reason: string;
  readonly position: number;
  constructor(reason: string, position: number) {
    super(`${reason} at offset ${position}`);
    this.reason = reason;
    this.position = position;
  }
}

export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects allowed (the root container is depth 1). @default 64 */
  maxDepth?: number;
  /**
   * Objects get a null prototype, so a missing key never reads an inherited member.
   * Either way a `__proto__` key is plain data. @default false
   */
  nullPrototype?: boolean;
  /** Accepts strings holding an unpaired UTF-16 surrogate (`"\ud800"`). @default false */
  allowLoneSurrogates?: boolean;
}

const utf8KeepBom = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const utf8StripBom = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;

export function parseStrictJson(text: string, options: StrictJsonOptions = {}): JsonValue {
  const parser = new Parser(text, options);
  parser.skipWhitespace();
  const value = parser.value(0);
  parser.skipWhitespace();
  if (parser.pos !== text.length) parser.fail('unexpected data after the JSON value');
  return value;
}

/**
 * Decodes UTF-8 strictly (no replacement characters). The BOM is kept by default so the parser
 * rejects it; `stripBom` drops a leading one instead.
 */
export function decodeUtf8Strict(bytes: Uint8Array, options: { stripBom?: boolean } = {}): string {
  return (options.stripBom ? utf8StripBom : utf8KeepBom).decode(bytes);
}

class Parser {
  pos = 0;
  private readonly maxDepth: number;
  private readonly nullPrototype: boolean;
  private readonly allowLoneSurrogates: boolean;
  constructor(
    private readonly text: string,
    options: StrictJsonOptions,
  ) {
    this.maxDepth = options.maxDepth ?? 64;
    this.nullPrototype = options.nullPrototype ?? false;
    this.allowLoneSurrogates = options.allowLoneSurrogates ?? false;
  }

  fail(message: string): never {
    throw new StrictJsonError(message, this.pos);
  }

  skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.pos++;
      else break;
    }
  }

  value(depth: number): JsonValue {
    const c = this.text[this.pos];
    switch (c) {
      case '{':
        return this.object(depth + 1);
      case '[':
        return this.array(depth + 1);
      case '"':
        return this.string();
      case 't':
        return this.literal('true', true);
      case 'f':
        return this.literal('false', false);
      case 'n':
        return this.literal('null', null);
      default:
        if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
        return this.fail(
          c === undefined ? 'unexpected end of input' : `unexpected character ${JSON.stringify(c)}`,
        );
    }
  }

  literal<T>(word: string, result: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('invalid literal');
    this.pos += word.length;
    return result;
  }

  number(): number {
    NUMBER.lastIndex = this.pos;
    const m = NUMBER.exec(this.text);
    if (m === null) return this.fail('invalid number');
    this.pos += m[0].length;
    const n = Number(m[0]);
    if (!Number.isFinite(n)) this.fail('number out of range');
    return n;
  }

  string(): string {
    const t = this.text;
    this.pos++; // opening quote
    let out = '';
    let start = this.pos;
    for (;;) {
      if (this.pos >= t.length) this.fail('unterminated string');
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        out += t.slice(start, this.pos);
        this.pos++;
        break;
      }
      if (c < 0x20) this.fail('control character in string');
      if (c === 0x5c) {
        out += t.slice(start, this.pos);
        out += this.escape();
        start = this.pos;
        continue;
      }
      this.pos++;
    }
    if (!this.allowLoneSurrogates && hasLoneSurrogate(out)) this.fail('lone surrogate in string');
    return out;
  }

  escape(): string {
    const t = this.text;
    const e = t[this.pos + 1];
    this.pos += 2;
    switch (e) {
      case '"':
        return '"';
      case '\\':
        return '\\';
      case '/':
        return '/';
      case 'b':
        return '\b';
      case 'f':
        return '\f';
      case 'n':
        return '\n';
      case 'r':
        return '\r';
      case 't':
        return '\t';
      case 'u': {
        const hex = t.slice(this.pos, this.pos + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('invalid \\u escape');
        this.pos += 4;
        return String.fromCharCode(Number.parseInt(hex, 16));
      }
      default:
        this.pos -= 2;
        return this.fail('invalid escape');
    }
  }

  array(depth: number): JsonValue[] {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    this.pos++;
    const out: JsonValue[] = [];
    this.skipWhitespace();
    if (this.text[this.pos] === ']') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      out.push(this.value(depth));
      this.skipWhitespace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === ']') return out;
      if (c !== ',') {
        this.pos--;
        this.fail("expected ',' or ']'");
      }
    }
  }

  object(depth: number): JsonObject {
    if (depth > this.maxDepth) this.fail(`nesting deeper than ${this.maxDepth}`);
    this.pos++;
    const out: JsonObject = this.nullPrototype ? Object.create(null) : {};
    const seen = new Set<string>();
    this.skipWhitespace();
    if (this.text[this.pos] === '}') {
      this.pos++;
      return out;
    }
    for (;;) {
      this.skipWhitespace();
      if (this.text[this.pos] !== '"') this.fail('expected a string key');
      const keyAt = this.pos;
      const key = this.string();
      if (seen.has(key)) {
        this.pos = keyAt;
        this.fail(`duplicate key ${JSON.stringify(key)}`);
      }
      seen.add(key);
      this.skipWhitespace();
      if (this.text[this.pos] !== ':') this.fail("expected ':'");
      this.pos++;
      this.skipWhitespace();
      // defineProperty so a "__proto__" key is plain data, never a prototype change.
      Object.defineProperty(out, key, {
        value: this.value(depth),
        enumerable: true,
        writable: true,
        configurable: true,
      });
      this.skipWhitespace();
      const c = this.text[this.pos];
      this.pos++;
      if (c === '}') return out;
      if (c !== ',') {
        this.pos--;
        this.fail("expected ',' or '}'");
      }
    }
  }
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
      else return true;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return true;
    }
  }
  return false;
}
