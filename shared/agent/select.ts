/**
 * `--select` globs over module names: `*` and `?` stay within a path segment, `**` crosses
 * segments. A glob with a `:` after its last `/` also matches the tag (`ghcr.io/acme/*:1.*`).
 */
import type { ManifestModule } from '../core/domain.ts';

function globToRegExp(glob: string): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else {
        out += '[^/]*';
      }
    } else if (c === '?') {
      out += '[^/]';
    } else {
      out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${out}$`);
}

export function moduleSelector(globs: readonly string[]): (m: ManifestModule) => boolean {
  if (globs.length === 0) return () => true;
  const matchers = globs.map((g) => {
    const withTag = g.lastIndexOf(':') > g.lastIndexOf('/');
    const re = globToRegExp(g);
    return (m: ManifestModule) => re.test(withTag ? `${m.name}:${m.tag}` : m.name);
  });
  return (m) => matchers.some((match) => match(m));
}
