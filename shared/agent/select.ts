/**
 * `--select` globs over module names, in the core's glob grammar (`*` and `?` within a path
 * segment, `**` across). A glob with a `:` after its last `/` also matches the tag
 * (`ghcr.io/acme/*:1.*`): the name and the tag are matched apart, so `**` before the colon still
 * spans segments.
 */
import type { ManifestModule } from '../core/domain.ts';
import { compileGlob } from '../core/glob.ts';

/** An empty pattern (`name:`, `:tag`) matches nothing; picomatch would throw on it. */
function compile(glob: string): (value: string) => boolean {
  return glob === '' ? () => false : compileGlob(glob);
}

export function moduleSelector(globs: readonly string[]): (m: ManifestModule) => boolean {
  if (globs.length === 0) return () => true;
  const matchers = globs.map((glob): ((m: ManifestModule) => boolean) => {
    const colon = glob.lastIndexOf(':');
    if (colon <= glob.lastIndexOf('/')) {
      const name = compile(glob);
      return (m) => name(m.name);
    }
    const name = compile(glob.slice(0, colon));
    const tag = compile(glob.slice(colon + 1));
    return (m) => name(m.name) && tag(m.tag);
  });
  return (m) => matchers.some((match) => match(m));
}

/** Characters that make a name pattern match more than itself in the glob grammar. */
const GLOB_SYNTAX = /[*?[\]{}()!+@|\\]/;

/**
 * Which module names a selection can match, as far as the manifest's bins are concerned: `all`
 * when a name pattern has a wildcard (or there are no globs), else the exact names. Tags do not
 * matter here: every tag of a name lives in the bin of the name.
 */
export type SelectionNames = { all: true } | { all: false; names: readonly string[] };

export function selectionNames(globs: readonly string[]): SelectionNames {
  if (globs.length === 0) return { all: true };
  const names = new Set<string>();
  for (const glob of globs) {
    const colon = glob.lastIndexOf(':');
    const name = colon > glob.lastIndexOf('/') ? glob.slice(0, colon) : glob;
    if (name === '') continue; // matches nothing
    // A leading "./" is dropped by the matcher, so "./a" also matches "a": not an exact name.
    const exact = !GLOB_SYNTAX.test(name) && !name.startsWith('./') && compile(name)(name);
    if (!exact) return { all: true };
    names.add(name);
  }
  return { all: false, names: [...names].sort() };
}
