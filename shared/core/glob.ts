/**
 * Repository and module-name globs, one grammar for the config allow-lists and `--select`:
 * `*` and `?` match within one path segment, `**` matches across segments (`a/**\/b` also
 * matches `a/b`, `a/**` also matches `a`). Matching is picomatch's, with dots treated as
 * ordinary characters (registry names are full of them) and no negation or extglobs.
 */
import picomatch from 'picomatch';

export type Matcher = (value: string) => boolean;

const OPTIONS: picomatch.PicomatchOptions = {
  dot: true,
  nonegate: true,
  noextglob: true,
  strictSlashes: false,
};
const cache = new Map<string, Matcher>();

/** A compiled matcher for one glob (cached: allow-lists are checked on every delivery). */
export function compileGlob(glob: string): Matcher {
  const cached = cache.get(glob);
  if (cached !== undefined) return cached;
  const matcher = picomatch(glob, OPTIONS);
  if (cache.size < 1000) cache.set(glob, matcher);
  return matcher;
}

/** True when any glob matches; an empty list matches nothing. */
export function matchesAny(globs: readonly string[], value: string): boolean {
  return globs.some((glob) => compileGlob(glob)(value));
}
