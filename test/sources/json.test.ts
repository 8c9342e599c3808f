import { describe, expect, it } from 'vitest';
import { checkBodySize, parseJsonStrict } from '../../shared/core/sources/json.ts';
import { errorCode } from './helpers.ts';

describe('strict JSON', () => {
  it('parses what JSON.parse parses', () => {
    // Prepare
    const text = '{"a":[1,-2.5e3,true,false,null,"x\\u00e9\\n"],"b":{"c":{}}}';

    // Act
    const parsed = parseJsonStrict(text);

    // Assess
    expect(JSON.parse(JSON.stringify(parsed))).toEqual(JSON.parse(text));
  });

  it.each([
    ['duplicate key', '{"a":1,"a":2}'],
    ['trailing data', '{} {}'],
    ['trailing comma', '{"a":1,}'],
    ['single quotes', "{'a':1}"],
    ['leading zero', '{"a":01}'],
    ['raw control char', '{"a":"\u0001"}'],
    ['unterminated', '{"a":"x'],
    ['empty', ''],
    ['too deep', `${'['.repeat(40)}${']'.repeat(40)}`],
    ['NaN', '{"a":NaN}'],
    ['huge number', '{"a":1e999}'],
  ])('rejects %s', (_name, text) => {
    // Act
    const code = errorCode(() => parseJsonStrict(text));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('rejects invalid UTF-8', () => {
    // Prepare
    const body = new Uint8Array([0x22, 0xff, 0x22]);

    // Act
    const code = errorCode(() => parseJsonStrict(body));

    // Assess
    expect(code).toBe('WEBHOOK_MALFORMED');
  });

  it('accepts a leading UTF-8 BOM and lone surrogates in strings', () => {
    // Prepare
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('{"a":1}')]);

    // Act
    const withBom = parseJsonStrict(bom);
    const withSurrogate = parseJsonStrict('{"d":"\\ud800"}');

    // Assess
    expect(withBom).toEqual({ a: 1 });
    expect(withSurrogate).toEqual({ d: '\ud800' });
  });

  it('keeps __proto__ as plain data', () => {
    // Prepare
    const text = '{"__proto__":{"polluted":true}}';

    // Act
    const v = parseJsonStrict(text) as Record<string, unknown>;

    // Assess
    expect(Object.getPrototypeOf(v)).toBeNull();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('body cap', () => {
  it('refuses a body over the cap as too large, and takes one at the cap', () => {
    // Prepare
    const atCap = new Uint8Array(1024 * 1024);
    const over = new Uint8Array(1024 * 1024 + 1);

    // Act
    const refused = errorCode(() => checkBodySize(over));

    // Assess
    expect(refused).toBe('WEBHOOK_TOO_LARGE');
    expect(() => checkBodySize(atCap)).not.toThrow();
  });
});
