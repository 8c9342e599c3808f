/** The one glob grammar of allow-lists and `--select`: `*` and `?` within a segment, `**` across. */
import { describe, expect, it } from 'vitest';
import { compileGlob, matchesAny } from '../../shared/core/glob.ts';

describe('compileGlob', () => {
  it.each([
    ['plugins/**', 'plugins/a', true],
    ['plugins/**', 'plugins/a/b', true],
    // `a/**` also matches `a` itself.
    ['plugins/**', 'plugins', true],
    ['plugins/**', 'pluginsx/a', false],
    ['plugins/*', 'plugins/a', true],
    ['plugins/*', 'plugins/a/b', false],
    ['acme/*-filter', 'acme/jwt-filter', true],
    ['**/filters/*', 'a/b/filters/x', true],
    ['**/filters/*', 'filters/x', true],
    ['a/**/b', 'a/b', true],
    ['a/**/b', 'a/x/y/b', true],
    ['plugins/**/auth', 'plugins/auth', true],
    ['plugins/**/auth', 'plugins/x/auth', true],
    ['plugins/**/auth', 'plugins/authz', false],
    // Dots are ordinary characters: registry names are full of them.
    ['a.b/*', 'aXb/c', false],
    ['a.b/*', 'a.b/c', true],
    ['exact/name', 'exact/name', true],
    ['plugins/a?c', 'plugins/abc', true],
    ['plugins/a?c', 'plugins/ac', false],
    ['plugins/a?c', 'plugins/a/c', false],
    ['plugins/?', 'plugins/ab', false],
  ])('%s vs %s → %s', (glob, name, expected) => {
    // Prepare
    const matcher = compileGlob(glob);

    // Act
    const matched = matcher(name);

    // Assess
    expect(matched).toBe(expected);
  });

  it('returns the same compiled matcher for the same glob', () => {
    // Prepare
    const glob = 'cache/**';

    // Act
    const first = compileGlob(glob);
    const second = compileGlob(glob);

    // Assess
    expect(second).toBe(first);
  });
});

describe('matchesAny', () => {
  it('matches when any glob does, and an empty list matches nothing', () => {
    // Prepare
    const globs = ['plugins/*', 'filters/**'];

    // Act
    const results = [
      matchesAny(globs, 'plugins/a'),
      matchesAny(globs, 'filters/a/b'),
      matchesAny(globs, 'other/a'),
      matchesAny([], 'plugins/a'),
    ];

    // Assess
    expect(results).toEqual([true, true, false, false]);
  });
});
