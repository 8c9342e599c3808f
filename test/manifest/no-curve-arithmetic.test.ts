/**
 * Signing goes through node:crypto or KMS only. Elliptic-curve arithmetic written in bigint is
 * not constant-time (a timing side channel on the private key), so none may come back.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';

const root = fileURLToPath(new URL('../..', import.meta.url));
const self = fileURLToPath(import.meta.url);

const SIGNS_OF_CURVE_ARITHMETIC: [string, RegExp][] = [
  ['the P-256 field prime', /ffffffff00000001000000000000000000000000ffffffffffffffffffffffff/i],
  ['the P-256 group order', /ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551/i],
  ['the P-256 base point', /6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296/i],
  ['a 64-bit-plus bigint literal', /\b0x[0-9a-f]{16,}n\b/i],
  ['a modular inverse', /\bmod_?inv(erse)?\b/i],
  ['RFC 6979 nonces', /rfc ?6979/i],
  ['point arithmetic', /\b(toAffine|mulG|jacobian|pointAdd|pointDouble)\b/i],
];

function* sourceFiles(dir: string): Generator<string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sourceFiles(path);
    else if (/\.(ts|mts|cts|js|mjs|cjs)$/.test(entry.name) && path !== self) yield path;
  }
}

it('no hand-written elliptic-curve arithmetic remains in the project', () => {
  // Act
  const found: string[] = [];
  let scanned = 0;
  for (const top of ['shared', 'functions', 'infra', 'bench', 'bin', 'test']) {
    for (const file of sourceFiles(join(root, top))) {
      scanned++;
      const text = readFileSync(file, 'utf8');
      for (const [what, pattern] of SIGNS_OF_CURVE_ARITHMETIC) {
        if (pattern.test(text)) found.push(`${relative(root, file)}: ${what}`);
      }
    }
  }
  // Assess
  expect(scanned).toBeGreaterThan(50);
  expect(found).toEqual([]);
});
