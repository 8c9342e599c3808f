/**
 * docs/config.md against the code: every key the config schema knows is documented and nothing
 * else is, the documented defaults are the defaults, the examples parse, and the duration and
 * glob tables say what the parsers do.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/core/config.ts';
import { parseDuration } from '../../shared/core/duration.ts';
import { compileGlob } from '../../shared/core/glob.ts';

const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'config.md'), 'utf8');
const SOURCE_FIELDS: Record<string, string> = {
  id: 'a',
  type: 'distribution',
  registry: 'r.io',
  repositories: '["**"]',
  webhookSecretEnv: 'X',
};
const SOURCE = Object.entries(SOURCE_FIELDS)
  .map(([k, v]) => `${k}: ${v}`)
  .join(', ');

/** A minimal valid source with `fragment` (`key: value`) added, or replacing that key. */
function withField(fragment: string): string {
  const key = fragment.slice(0, fragment.indexOf(':'));
  const fields = { ...SOURCE_FIELDS, [key]: fragment.slice(key.length + 1).trim() };
  return Object.entries(fields)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
}

/** The keys allowed where `yaml` puts an unknown key, read off the error that lists them. */
function keysAt(yaml: string): string[] {
  try {
    parseConfig(yaml, 'c');
  } catch (err) {
    const list = /is not a known key \(expected one of ([^)]+)\)/.exec((err as Error).message)?.[1];
    if (list !== undefined) return list.split(', ');
    throw err;
  }
  throw new Error(`no unknown-key error for ${yaml}`);
}

/** `### \`mirror.name\`` headings, as key paths. */
const headings = [...doc.matchAll(/^### `([^`]+)`$/gm)].map((m) => m[1]!);

/** Each heading's section text. */
function section(key: string): string {
  const start = doc.indexOf(`### \`${key}\``);
  const end = doc.indexOf('\n#', start + 1);
  return doc.slice(start, end === -1 ? undefined : end);
}

/** Rows of the markdown table under `heading`, as cell arrays. */
function table(heading: string): string[][] {
  const start = doc.indexOf(`\n## ${heading}\n`);
  expect(start, heading).toBeGreaterThan(-1);
  const rest = doc.slice(start + 1);
  const body = rest.slice(0, rest.indexOf('\n## ', 1) === -1 ? undefined : rest.indexOf('\n## ', 1));
  return body
    .split('\n')
    .filter((l) => l.startsWith('|') && !/^\|\s*-/.test(l))
    .slice(1)
    .map((l) =>
      l
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim()),
    );
}

const ticks = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

describe('docs/config.md', () => {
  it('documents every key, and only keys that exist', () => {
    // Prepare
    const expected = [
      ...keysAt('zzz: 1').map((k) => k),
      ...keysAt('mirror: { zzz: 1 }').map((k) => `mirror.${k}`),
      ...keysAt(`sources: [{ ${SOURCE}, zzz: 1 }]`).map((k) => `sources[].${k}`),
    ].filter((k) => k !== 'mirror' && k !== 'sources');
    // Act / Assess
    expect([...headings].sort()).toEqual(expected.sort());
    for (const k of keysAt(
      `sources: [{ ${SOURCE}, credentials: { usernameEnv: A, passwordEnv: B, zzz: 1 } }]`,
    )) {
      expect(section('sources[].credentials'), k).toContain(`\`${k}\``);
    }
    const retention = table('Retention policies').map((row) => ticks(row[0]!)[0]);
    expect(retention.sort()).toEqual(keysAt('mirror: { retention: { zzz: 1 } }').sort());
    expect(keysAt(`sources: [{ ${SOURCE}, retention: { zzz: 1 } }]`)).toContain('overrides');
    expect(section('sources[].retention')).toContain('`overrides`');
  });

  it('gives each key its real default', () => {
    // Prepare
    const empty = parseConfig('');
    const base = parseConfig(`sources: [{ ${SOURCE} }]`);
    let checked = 0;
    // Act / Assess
    for (const key of headings) {
      const value = /^- Default: `([^`]+)`/m.exec(section(key))?.[1];
      if (value === undefined) continue;
      const [group, name] = key.split('.') as [string, string];
      if (group === 'mirror') {
        expect(parseConfig(`mirror: { ${name}: ${value} }`).mirror, key).toEqual(empty.mirror);
      } else {
        expect(parseConfig(`sources: [{ ${SOURCE}, ${name}: ${value} }]`).sources, key).toEqual(base.sources);
      }
      checked++;
    }
    // Assess
    expect(checked).toBeGreaterThanOrEqual(8);
  });

  it('has examples that parse', () => {
    // Prepare
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    // Act / Assess
    expect(blocks.length).toBeGreaterThan(0);
    for (const yaml of blocks) expect(() => parseConfig(yaml, 'docs/config.md')).not.toThrow();
    for (const key of headings) {
      const example = /^- Example: (.*)$/m.exec(section(key))?.[1];
      expect(example, `${key} has an example`).toBeDefined();
      const [group] = key.split('.');
      for (const fragment of ticks(example!)) {
        const text = group === 'mirror' ? `mirror: { ${fragment} }` : `sources: [{ ${withField(fragment)} }]`;
        expect(() => parseConfig(text, key), `${key}: ${fragment}`).not.toThrow();
      }
    }
  });

  it('states the duration grammar the parser implements', () => {
    // Act / Assess
    for (const [text] of table('Durations')) {
      for (const t of ticks(text!)) expect(parseDuration(t), t).toBeGreaterThan(0);
    }
    expect(parseDuration('1h30m')).toBe(parseDuration('1.5h'));
    expect(parseDuration('2d')).toBe(48 * 3600_000);
    // What the text says is refused.
    expect(parseDuration('30')).toBeUndefined();
    expect(parseDuration('1h 30m')).toBeUndefined();
    expect(parseConfig('mirror: { manifestTtl: 3600000 }').mirror.manifestTtlMs).toBe(3600_000);
  });

  it('states the glob grammar the matcher implements', () => {
    // Prepare
    const rows = table('Globs');
    // Act / Assess
    expect(rows.length).toBeGreaterThanOrEqual(5);
    for (const [glob, matches, misses] of rows) {
      const [g] = ticks(glob!);
      for (const v of ticks(matches!)) expect(compileGlob(g!)(v), `${g} matches ${v}`).toBe(true);
      for (const v of ticks(misses!)) expect(compileGlob(g!)(v), `${g} does not match ${v}`).toBe(false);
    }
  });
});
