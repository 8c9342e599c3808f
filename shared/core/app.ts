/**
 * The application factory: builds receive, mirror, publish and reconcile, with their metrics,
 * from ports. Both runtimes (the Lambda functions and the embedded process) call this and only
 * choose adapters, so wiring, credentials and metric names cannot drift between them.
 */
import { sleep } from './backoff.ts';
import type { MirrorJob } from './domain.ts';
import { WasmMirrorError } from './errors.ts';
import { metricNames, recordManifestGauges } from './metrics.ts';
import type { PipelineDeps } from './pipeline/context.ts';
import { resolveCredentials } from './pipeline/context.ts';
import { collectGarbage } from './pipeline/garbage.ts';
import { createMirror, createMirrorHandler, type MirrorOutcome } from './pipeline/mirror.ts';
import { createPublisher, type PublishOutcome, writeKeysJson } from './pipeline/publish.ts';
import { createWebhookReceiver, type WebhookEndpoint } from './pipeline/receive.ts';
import { type ReconcileResult, reconcileSource } from './pipeline/reconcile.ts';
import { NoteCache, sweepRegistryView, syncPending } from './pipeline/registry-view.ts';
import { listedTags, readListingHead } from './pipeline/state.ts';
import type { DeliveryMeta, PublishRequest } from './ports.ts';

export interface MirrorAppOptions {
  /** Called once for a job that failed for good (not Wasm, not allowed, …): status pages show these. */
  onPermanentFailure?: (job: MirrorJob, error: WasmMirrorError) => void | Promise<void>;
  /** How publish waits out `mirror.publishInterval` (tests pass one that advances their clock). */
  sleep?: (ms: number) => Promise<void>;
}

export interface MirrorApp {
  readonly deps: PipelineDeps;
  /** A webhook delivery: authenticate, parse, queue mirror jobs (`admit`: check its head first). */
  readonly receiveWebhook: WebhookEndpoint;
  /** Mirror one job and report what happened (the CLI and tests read the outcome). */
  mirror(job: MirrorJob, meta?: DeliveryMeta): Promise<MirrorOutcome>;
  /** The mirror queue's handler: permanent failures are recorded and acknowledged, transient ones throw. */
  handleMirrorJob(job: MirrorJob, meta?: DeliveryMeta): Promise<void>;
  /** Fold requests into the next signed manifest; the manifest gauges follow. */
  publish(requests: PublishRequest[]): Promise<PublishOutcome>;
  /** Compare a source's registry with what is listed and queue what changed. */
  reconcile(sourceId: string, signal?: AbortSignal): Promise<ReconcileResult>;
  /** Publish the mirror's public keys (`keys.json`). */
  writeKeys(): Promise<void>;
  /** Refresh the manifest gauges from storage (for a scrape long after the last publish). */
  reportManifest(): Promise<void>;
}

export function createMirrorApp(deps: PipelineDeps, options: MirrorAppOptions = {}): MirrorApp {
  const mirror = createMirror(deps);
  const publisher = createPublisher(deps);
  const receiveWebhook = createWebhookReceiver(deps);
  // Per source, per process: a tag the mirror rejected is not queued again by every reconcile run.
  const lastQueued = new Map<string, Map<string, string>>();
  let lastPublishedAt: number | undefined;
  const notes = new NoteCache();

  return {
    deps,
    receiveWebhook,
    mirror,
    handleMirrorJob: createMirrorHandler({ ...deps, ...options }, mirror),
    async publish(requests) {
      // Coalescing: versions at most once per publishInterval. A lone push is published at once;
      // during a burst, what arrives while this waits is folded into the next version.
      const interval = deps.config.mirror.publishIntervalMs;
      if (interval > 0 && requests.some((r) => r.kind === 'record')) {
        lastPublishedAt ??= Date.parse((await readListingHead(deps.store))?.issuedAt ?? '') || 0;
        const wait = lastPublishedAt + interval - deps.clock.now().getTime();
        if (wait > 0) await (options.sleep ?? sleep)(Math.min(wait, interval));
      }
      const outcome = await publisher(requests);
      if (outcome.published) lastPublishedAt = deps.clock.now().getTime();
      const scheduled = requests.some((r) => r.kind === 'resign' && r.reason === 'schedule');
      const { registry } = deps;
      if (registry !== undefined) {
        // Every run, published or not: names an earlier run marked and did not finish are done here.
        // Never fails the publish: the view follows the signed manifest, marks keep what is left.
        const view = { ...deps, registry, notes };
        let failed: number;
        try {
          const synced = await syncPending(view);
          failed = synced.failed + (scheduled ? (await sweepRegistryView(view)).failed : 0);
        } catch (err) {
          deps.logger.error('registry view not updated; retried on the next publish', {
            error: err instanceof Error ? err.message : String(err),
          });
          failed = 1;
        }
        if (failed > 0) deps.metrics.count(metricNames.registryViewFailures, {}, failed);
      }
      // The scheduled pass: retention ran over every name; now the bytes nobody can need go.
      if (scheduled) await collectGarbage(deps);
      recordManifestGauges(deps.metrics, outcome, deps.clock.now());
      return outcome;
    },
    async reconcile(sourceId, signal) {
      const source = deps.config.sources.find((s) => s.id === sourceId);
      if (source === undefined) throw new WasmMirrorError('CONFIG_INVALID', `no source '${sourceId}'`);
      const queued = lastQueued.get(sourceId) ?? new Map<string, string>();
      lastQueued.set(sourceId, queued);
      const credentials = await resolveCredentials(deps, source);
      return reconcileSource(source, {
        puller: deps.puller,
        queue: deps.mirrorQueue,
        listKnown: () => listedTags(deps.store),
        clock: deps.clock,
        logger: deps.logger,
        metrics: deps.metrics,
        lastQueued: queued,
        ...(credentials === undefined ? {} : { credentials }),
        ...(signal === undefined ? {} : { signal }),
      });
    },
    writeKeys: () => writeKeysJson(deps),
    async reportManifest() {
      const head = await readListingHead(deps.store);
      if (head === undefined) return;
      const { version, issuedAt, expiresAt, entries } = head;
      recordManifestGauges(
        deps.metrics,
        { version, issuedAt, expiresAt, modules: entries },
        deps.clock.now(),
      );
    },
  };
}
