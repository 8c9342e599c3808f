/**
 * Periodic reconcile of one source: list the tags of its allowed repositories, resolve each tag's
 * digest, and queue a mirror job for every tag whose digest the manifest does not list yet. It
 * backs up senders whose delivery is best effort (ECR, Docker Hub, Quay) and registries without
 * webhooks, on the same queue as webhook jobs, in both runtimes.
 *
 * Only repository entries without wildcards can be listed: the Distribution API has no "list
 * repositories matching a glob" and `/v2/_catalog` is disabled or partial on most hosted
 * registries, so glob entries are skipped (and reported) rather than guessed.
 */
import type { MirrorJob } from '../domain.ts';
import { SHA256_DIGEST } from '../domain.ts';
import { toWasmMirrorError } from '../errors.ts';
import { metricNames } from '../metrics.ts';
import { isValidRepository, isValidTag } from '../oci/reference.ts';
import type {
  Clock,
  Logger,
  Metrics,
  QueueProducer,
  RegistryCredentials,
  SecretSource,
  WasmPuller,
} from '../ports.ts';
import type { SourceConfig } from '../sources/types.ts';
import { credentialsFromSecrets } from './context.ts';

export interface ReconcileDeps {
  puller: WasmPuller;
  queue: QueueProducer<MirrorJob>;
  /** What the current manifest lists: `<registry>/<repository>:<tag>` → OCI manifest digest. */
  listKnown: () => Promise<Map<string, string>>;
  clock: Clock;
  logger: Logger;
  metrics?: Metrics;
  /** Pull credentials; when absent they are read through `secrets` from the source's `credentials` names. */
  credentials?: RegistryCredentials;
  secrets?: SecretSource;
  /**
   * Digests queued by earlier runs, same keys as listKnown. Pass the same map on every run: a tag
   * the mirror rejects (not Wasm) never gets listed, and without this it would be queued again
   * on every interval. Entries are replaced as tags move.
   */
  lastQueued?: Map<string, string>;
  /** Tags resolved per repository at most (newest-first order is not available; the list order is kept). */
  maxTagsPerRepository?: number;
  /** Digest resolutions in flight at once. */
  concurrency?: number;
  signal?: AbortSignal;
}

export interface ReconcileFailure {
  repository: string;
  tag?: string;
  code: string;
  message: string;
}

export interface ReconcileResult {
  sourceId: string;
  /** Repositories listed. */
  repositories: string[];
  /** Allow-list entries with wildcards, which cannot be listed without a catalog. */
  skippedGlobs: string[];
  tagsSeen: number;
  queued: MirrorJob[];
  unchanged: number;
  failures: ReconcileFailure[];
}

const DEFAULT_MAX_TAGS = 500;
const DEFAULT_CONCURRENCY = 4;

export function knownKey(registry: string, repository: string, tag: string): string {
  return `${registry}/${repository}:${tag}`;
}

/** Allow-list entries that name one repository exactly (no `*`), valid by the OCI grammar. */
export function listableRepositories(source: SourceConfig): {
  repositories: string[];
  skippedGlobs: string[];
} {
  const repositories: string[] = [];
  const skippedGlobs: string[] = [];
  for (const entry of source.repositories) {
    if (entry.includes('*')) skippedGlobs.push(entry);
    else if (isValidRepository(entry) && !repositories.includes(entry)) repositories.push(entry);
  }
  return { repositories, skippedGlobs };
}

export async function reconcileSource(source: SourceConfig, deps: ReconcileDeps): Promise<ReconcileResult> {
  const { repositories, skippedGlobs } = listableRepositories(source);
  const result: ReconcileResult = {
    sourceId: source.id,
    repositories,
    skippedGlobs,
    tagsSeen: 0,
    queued: [],
    unchanged: 0,
    failures: [],
  };
  if (skippedGlobs.length > 0) {
    deps.logger.info('reconcile skips wildcard repositories (no catalog listing)', {
      sourceId: source.id,
      globs: skippedGlobs,
    });
  }
  if (repositories.length === 0) return result;

  const credentials = deps.credentials ?? (await credentialsFromSecrets(source, deps.secrets));
  const known = await deps.listKnown();
  const runAt = deps.clock.now().toISOString();
  const maxTags = deps.maxTagsPerRepository ?? DEFAULT_MAX_TAGS;
  const base = { registry: source.registry, insecure: source.insecure };
  const withCredentials = <T extends object>(t: T) => (credentials === undefined ? t : { ...t, credentials });
  const fail = (repository: string, err: unknown, tag?: string) => {
    const e = toWasmMirrorError(err, 'REGISTRY_UNAVAILABLE');
    const failure: ReconcileFailure = { repository, code: e.code, message: e.message };
    if (tag !== undefined) failure.tag = tag;
    result.failures.push(failure);
    deps.metrics?.count(metricNames.reconcileFailures, { source: source.id, code: e.code });
    deps.logger.warn('reconcile could not check a repository', { sourceId: source.id, ...failure });
  };

  for (const repository of repositories) {
    if (deps.signal?.aborted) break;
    let tags: string[];
    try {
      tags = await deps.puller.listTags(withCredentials({ ...base, repository }), optionsOf(deps.signal));
    } catch (err) {
      fail(repository, err);
      continue;
    }
    const valid = tags.filter((t) => typeof t === 'string' && isValidTag(t));
    if (valid.length > maxTags) {
      deps.logger.warn('reconcile checks only the first tags of a large repository', {
        sourceId: source.id,
        repository,
        tags: valid.length,
        checked: maxTags,
      });
    }
    const checked = valid.slice(0, maxTags);
    result.tagsSeen += checked.length;

    await forEachLimited(checked, deps.concurrency ?? DEFAULT_CONCURRENCY, async (tag) => {
      if (deps.signal?.aborted) return;
      const key = knownKey(source.registry, repository, tag);
      let digest: string;
      try {
        digest = await deps.puller.resolveDigest(
          withCredentials({ ...base, repository, reference: tag }),
          optionsOf(deps.signal),
        );
      } catch (err) {
        fail(repository, err, tag);
        return;
      }
      if (!SHA256_DIGEST.test(digest)) {
        fail(repository, new Error(`registry answered an invalid digest for ${tag}`), tag);
        return;
      }
      if (known.get(key) === digest || deps.lastQueued?.get(key) === digest) {
        result.unchanged++;
        return;
      }
      const job: MirrorJob = {
        sourceId: source.id,
        registry: source.registry,
        repository,
        tag,
        digest,
        deliveryId: `reconcile:${runAt}`,
        receivedAt: runAt,
      };
      try {
        await deps.queue.send(job, { dedupeId: `reconcile:${key}@${digest}` });
      } catch (err) {
        fail(repository, toWasmMirrorError(err, 'QUEUE_FAILURE'), tag);
        return;
      }
      deps.lastQueued?.set(key, digest);
      result.queued.push(job);
    });
  }

  deps.metrics?.count(metricNames.reconcileJobs, { source: source.id }, result.queued.length);
  deps.logger.info('reconcile finished', {
    sourceId: source.id,
    repositories: repositories.length,
    tags: result.tagsSeen,
    queued: result.queued.length,
    unchanged: result.unchanged,
    failures: result.failures.length,
  });
  return result;
}

function optionsOf(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal === undefined ? {} : { signal };
}

async function forEachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const item = items[next++]!;
      await fn(item);
    }
  });
  await Promise.all(workers);
}
