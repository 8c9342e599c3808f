/**
 * Retention: which listed tags of a repository stay. Per source, overridable per repository
 * glob, with a mirror-wide default: keep the newest `keepTags`, drop tags older than `maxAge`,
 * never drop tags matching `pin`. Pruned entries leave the next manifest; their bytes are
 * deleted later, once no manifest that lists them can still be valid (see garbage.ts).
 */
import type { MirrorConfig, RetentionPolicy } from '../config.ts';
import type { ManifestModule } from '../domain.ts';
import { compileGlob, matchesAny } from '../glob.ts';

/** The policy for a listed name (`<registry>/<repository>`), or undefined: keep everything. */
export function retentionFor(config: MirrorConfig, name: string): RetentionPolicy | undefined {
  for (const source of config.sources) {
    if (!name.startsWith(`${source.registry}/`)) continue;
    const repository = name.slice(source.registry.length + 1);
    if (!matchesAny(source.repositories, repository)) continue;
    const override = source.retention?.overrides?.find((o) => matchesAny(o.repositories, repository));
    return merge(config.mirror.retention, source.retention, override);
  }
  return config.mirror.retention;
}

function merge(...layers: (RetentionPolicy | undefined)[]): RetentionPolicy | undefined {
  const present = layers.filter((l): l is RetentionPolicy => l !== undefined);
  if (present.length === 0) return undefined;
  const out: RetentionPolicy = {};
  for (const layer of present) {
    if (layer.keepTags !== undefined) out.keepTags = layer.keepTags;
    if (layer.maxAgeMs !== undefined) out.maxAgeMs = layer.maxAgeMs;
    if (layer.pin !== undefined) out.pin = layer.pin;
  }
  return out;
}

/**
 * The entries of one name that retention keeps. Newest first by listing time (`mirroredAt`);
 * pinned tags always stay and do not count towards keepTags.
 */
export function applyRetention(
  entries: readonly ManifestModule[],
  policy: RetentionPolicy | undefined,
  now: Date,
): ManifestModule[] {
  if (policy === undefined || (policy.keepTags === undefined && policy.maxAgeMs === undefined))
    return [...entries];
  const pins = (policy.pin ?? []).map(compileGlob);
  const pinned = (m: ManifestModule) => m.tag !== '' && pins.some((p) => p(m.tag));
  const oldest = policy.maxAgeMs === undefined ? -Infinity : now.getTime() - policy.maxAgeMs;
  const newestFirst = [...entries].sort((a, b) => Date.parse(b.mirroredAt) - Date.parse(a.mirroredAt));
  const kept: ManifestModule[] = [];
  let counted = 0;
  for (const m of newestFirst) {
    if (pinned(m)) {
      kept.push(m);
      continue;
    }
    if (Date.parse(m.mirroredAt) < oldest) continue;
    if (policy.keepTags !== undefined && counted >= policy.keepTags) continue;
    counted++;
    kept.push(m);
  }
  return kept;
}
