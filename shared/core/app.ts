/**
 * The application factory: builds receive, mirror, publish and reconcile, with their metrics,
 * from ports. Both runtimes (the Lambda functions and the embedded process) call this and only
 * choose adapters, so wiring, credentials and metric names cannot drift between them.
 */
import type { MirrorJob } from './domain.ts';
import { WasmMirrorError } from './errors.ts';
import { recordManifestGauges } from './metrics.ts';
import type { PipelineDeps } from './pipeline/context.ts';
import { resolveCredentials } from './pipeline/context.ts';
import { createMirror, createMirrorHandler, type MirrorOutcome } from './pipeline/mirror.ts';
import { createPublisher, type PublishOutcome, writeKeysJson } from './pipeline/publish.ts';
import {
  createWebhookReceiver,
  type WebhookHttpRequest,
  type WebhookHttpResponse,
} from './pipeline/receive.ts';
import { type ReconcileResult, reconcileSource } from './pipeline/reconcile.ts';
import { listedTags, readLatestManifest } from './pipeline/state.ts';
import type { DeliveryMeta, PublishRequest } from './ports.ts';

export interface MirrorAppOptions {
  /** Called once for a job that failed for good (not Wasm, not allowed, …): status pages show these. */
  onPermanentFailure?: (job: MirrorJob, error: WasmMirrorError) => void | Promise<void>;
}

export interface MirrorApp {
  readonly deps: PipelineDeps;
  /** A webhook delivery: authenticate, parse, queue mirror jobs. */
  receiveWebhook(request: WebhookHttpRequest): Promise<WebhookHttpResponse>;
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

  return {
    deps,
    receiveWebhook,
    mirror,
    handleMirrorJob: createMirrorHandler({ ...deps, ...options }, mirror),
    async publish(requests) {
      const outcome = await publisher(requests);
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
      const latest = await readLatestManifest(deps.store);
      if (latest === undefined) return;
      const { version, issuedAt, expiresAt, modules } = latest.payload;
      recordManifestGauges(
        deps.metrics,
        { version, issuedAt, expiresAt, modules: modules.length },
        deps.clock.now(),
      );
    },
  };
}
