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
