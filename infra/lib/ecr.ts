/**
 * The ECR repositories the config allows, in the two forms AWS matches names with: IAM resource
 * ARNs for the pull grant, and EventBridge patterns for the push rule. Both cover at least what
 * the allow-list glob matches, since the mirror checks the glob itself; IAM's `*` also crosses
 * `/`, so a one-segment `*` grants a little more than it allows.
 */
import { Aws } from 'aws-cdk-lib';
import { ecrRegistry } from '../../functions/adapters/ecr-host.ts';
import type { MirrorConfig } from '../../shared/core/config.ts';

/**
 * ARN-style name patterns for one repository glob. A `**` segment matches zero or more segments
 * (`wasm/**` also matches `wasm`), so each one yields the name without it and with a `*` in its
 * place; `*` and `?` carry over as they are.
 */
export function repositoryNamePatterns(glob: string): string[] {
  let variants: string[][] = [[]];
  for (const segment of glob.split('/')) {
    if (segment === '**') variants = variants.flatMap((v) => [v, [...v, '*']]);
    else variants = variants.map((v) => [...v, segment.replace(/\*+/g, '*')]);
  }
  const patterns = [...new Set(variants.filter((v) => v.length > 0).map((v) => v.join('/')))];
  return patterns.includes('*') ? ['*'] : patterns.sort();
}

export interface EcrRegistryRepositories {
  account: string;
  region: string;
  /** Name patterns, `*` for every repository. */
  patterns: string[];
}

/** The configured ECR registries, each with the repository patterns its sources allow. */
export function ecrRepositories(config: MirrorConfig): EcrRegistryRepositories[] {
  const byRegistry = new Map<string, EcrRegistryRepositories>();
  for (const source of config.sources) {
    if (source.type !== 'ecr') continue;
    // The same host forms the function accepts (-fips endpoints, .amazonaws.com.cn in China).
    const ecr = ecrRegistry(source.registry);
    if (ecr === undefined) continue;
    const key = `${ecr.account}/${ecr.region}`;
    const entry = byRegistry.get(key) ?? { ...ecr, patterns: [] };
    entry.patterns = merge(entry.patterns, source.repositories.flatMap(repositoryNamePatterns));
    byRegistry.set(key, entry);
  }
  return [...byRegistry.values()];
}

export function repositoryArns(registry: EcrRegistryRepositories): string[] {
  return registry.patterns.map(
    (p) => `arn:${Aws.PARTITION}:ecr:${registry.region}:${registry.account}:repository/${p}`,
  );
}

/** EventBridge content filters on `detail.repository-name`; undefined when any name is allowed. */
export function repositoryNameFilters(config: MirrorConfig): unknown[] | undefined {
  const patterns = merge(
    [],
    ecrRepositories(config).flatMap((r) => r.patterns),
  );
  if (patterns.includes('*')) return undefined;
  return patterns.map((p) => {
    if (!/[*?]/.test(p)) return p;
    const head = p.slice(0, -1);
    if (p.endsWith('*') && !/[*?]/.test(head)) return { prefix: head };
    // EventBridge wildcards know only `*`; a `?` widens to it.
    return { wildcard: p.replace(/\?/g, '*') };
  });
}

function merge(a: string[], b: string[]): string[] {
  const all = [...new Set([...a, ...b])];
  return all.includes('*') ? ['*'] : all.sort();
}
