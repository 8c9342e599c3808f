/**
 * The embedded runtime's composition root: the same use cases as the Lambda functions, wired to
 * local adapters — a filesystem store, durable on-disk queues, a local P-256 key, and a node:http
 * server for webhooks and the mirror itself. One process, no cloud account.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import type { Server } from 'node:http';
import { join, resolve } from 'node:path';
import {
  DEFAULT_DEAD_LETTER_RETENTION_MS,
  type DeadLetter,
  DiskQueue,
} from '../adapters/local/disk-queue.ts';
import { FsObjectStore } from '../adapters/local/fs-object-store.ts';
import { loadOrCreateKey, publishedKeyIds } from '../adapters/local/signer.ts';
import { createMirrorApp, type MirrorApp } from '../core/app.ts';
import type { MirrorConfig } from '../core/config.ts';
import type { MirrorJob } from '../core/domain.ts';
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import { v2Keys } from '../core/manifest/v2.ts';
import { metricNames } from '../core/metrics.ts';
import type { PipelineDeps } from '../core/pipeline/context.ts';
import { listAllEntries, readListingHead } from '../core/pipeline/state.ts';
import type { Logger, PublishRequest, SecretSource } from '../core/ports.ts';
import { systemClock } from '../core/ports.ts';
import { storageKeys } from '../core/storage-keys.ts';
import { OciWasmPuller } from '../core/wasm/puller.ts';
import { JsonLinesLogger, PrometheusRegistry } from '../platform/telemetry.ts';
import { sourceHealth, WebhookActivity } from '../status-page/source-health.ts';
import { createMirrorServer, type HealthReport, listen } from './http-server.ts';
import { LiveOperations, sweepLeftovers } from './leftovers.ts';
import { type DataDirLock, ensureDataDir, lockDataDir } from './lock.ts';
import { createOciEndpoint } from './oci-endpoint.ts';

export interface EmbeddedOptions {
  config: MirrorConfig;
  dataDir: string;
  host?: string;
  port?: number;
  /** Where secrets named in the config are read from. */
  env?: Readonly<Record<string, string | undefined>>;
  logger?: Logger;
  /** Mirror queue retry policy: deliveries before a job is dead-lettered, and the first backoff. */
  retry?: MirrorRetry;
  /** Start with a signing key other than the one that signed the published manifests (`--rotate-key`). */
  rotateKey?: boolean;
  /** Limits on what clients can make the HTTP server hold (see createMirrorServer). */
  http?: {
    maxConnections?: number;
    maxInFlightBodyBytes?: number;
    bodyTimeoutMs?: number;
  };
  /** Crash leftovers: how old a temp file must be to be removed, and how often to look. */
  leftovers?: {
    /** @default 15 minutes */
    graceMs?: number;
    /** @default 10 minutes */
    intervalMs?: number;
  };
}

export interface MirrorRetry {
  /** @default 8 */
  maxAttempts?: number;
  /** Doubles per attempt up to 5 minutes. @default 1000 */
  backoffBaseMs?: number;
  /** How long dead letters (of both queues) are kept before they are deleted. @default 14 days */
  deadLetterRetentionMs?: number;
}

export interface EmbeddedMirror {
  url: string;
  deps: PipelineDeps;
  metrics: PrometheusRegistry;
  stop(): Promise<void>;
}

export interface FailureEntry {
  at: string;
  sourceId: string;
  reference: string;
  code: string;
  message: string;
}

const RECENT_FAILURES = 100;
const DELIVERY_MARKER_TTL_MS = 7 * 24 * 3600_000;
const LEFTOVER_GRACE_MS = 15 * 60_000;
const LEFTOVER_SWEEP_INTERVAL_MS = 10 * 60_000;

/** Paths inside the data directory that are not part of the public storage layout. */
export const dataPaths = (dataDir: string) => ({
  mirrorQueue: join(dataDir, 'queues', 'mirror'),
  publishQueue: join(dataDir, 'queues', 'publish'),
  privateDir: join(dataDir, 'private'),
  scratch: join(dataDir, 'tmp'),
});

export function envSecrets(env: Readonly<Record<string, string | undefined>>): SecretSource {
  return { get: async (name) => env[name] };
}

/** Builds the local adapters for a data directory: shared by the server and `wasm-mirror mirror`. */
export async function buildLocalDeps(options: {
  config: MirrorConfig;
  dataDir: string;
  env: Readonly<Record<string, string | undefined>>;
  logger: Logger;
  metrics: PrometheusRegistry;
  retry?: MirrorRetry;
  rotateKey?: boolean;
  /** The caller sweeps crash leftovers in the whole data directory (temp files included). */
  sweepsLeftovers?: boolean;
}): Promise<{
  deps: PipelineDeps;
  mirrorQueue: DiskQueue<MirrorJob>;
  publishQueue: DiskQueue<PublishRequest>;
}> {
  const paths = dataPaths(options.dataDir);
  await mkdir(paths.scratch, { recursive: true });
  const store = await FsObjectStore.open({
    root: options.dataDir,
    sweepTempsOnOpen: options.sweepsLeftovers !== true,
  });
  const mirrorQueue = new DiskQueue<MirrorJob>({
    dir: paths.mirrorQueue,
    maxAttempts: options.retry?.maxAttempts ?? 8,
    backoffBaseMs: options.retry?.backoffBaseMs ?? 1000,
    visibilityTimeoutMs: 10 * 60_000,
    deadLetterRetentionMs: options.retry?.deadLetterRetentionMs ?? DEFAULT_DEAD_LETTER_RETENTION_MS,
    logger: options.logger,
    metrics: options.metrics,
  });
  const publishQueue = new DiskQueue<PublishRequest>({
    dir: paths.publishQueue,
    maxAttempts: 20,
    visibilityTimeoutMs: 2 * 60_000,
    deadLetterRetentionMs: options.retry?.deadLetterRetentionMs ?? DEFAULT_DEAD_LETTER_RETENTION_MS,
    logger: options.logger,
    metrics: options.metrics,
  });
  const signer = await loadOrCreateKey(paths.privateDir, {
    published: await publishedKeyIds(store),
    rotate: options.rotateKey === true,
  });
  const deps: PipelineDeps = {
    config: options.config,
    store,
    mirrorQueue,
    publishQueue,
    puller: new OciWasmPuller({ maxModuleBytes: options.config.mirror.maxModuleBytes }),
    signer,
    secrets: envSecrets(options.env),
    clock: systemClock,
    logger: options.logger,
    metrics: options.metrics,
    scratchDir: paths.scratch,
  };
  return { deps, mirrorQueue, publishQueue };
}

export async function startEmbedded(options: EmbeddedOptions): Promise<EmbeddedMirror> {
  const dataDir = resolve(options.dataDir);
  // A path that cannot be a data directory fails here, at once, saying why.
  await ensureDataDir(dataDir);
  const lock: DataDirLock = await lockDataDir(dataDir, 'serve');
  const logger = options.logger ?? new JsonLinesLogger({ stream: process.stderr });
  const metrics = new PrometheusRegistry({ prefix: 'wasm_mirror_' });
  const timers: NodeJS.Timeout[] = [];
  let server: Server | undefined;
  const queues: { stop(): Promise<void> }[] = [];
  try {
    const { deps, mirrorQueue, publishQueue } = await buildLocalDeps({
      config: options.config,
      dataDir,
      env: options.env ?? process.env,
      logger,
      metrics,
      ...(options.retry === undefined ? {} : { retry: options.retry }),
      rotateKey: options.rotateKey === true,
      // The leftover sweep below covers the store's temp files: the directory is walked once.
      sweepsLeftovers: true,
    });

    const failures: FailureEntry[] = [];
    const recordFailure = (job: MirrorJob, error: WasmMirrorError) => {
      failures.unshift({
        at: new Date().toISOString(),
        sourceId: job.sourceId,
        reference: `${job.registry}/${job.repository}${job.tag ? `:${job.tag}` : ''}${job.digest ? `@${job.digest}` : ''}`,
        code: error.code,
        message: error.message,
      });
      failures.length = Math.min(failures.length, RECENT_FAILURES);
    };

    queues.push(mirrorQueue, publishQueue);
    const app = createMirrorApp(deps, { onPermanentFailure: recordFailure });
    // Every operation that writes files runs through `operations`, so a sweep spares its files.
    const operations = new LiveOperations();
    const sweepLeftoversNow = async () => {
      const removed = await sweepLeftovers(dataDir, {
        graceMs: options.leftovers?.graceMs ?? LEFTOVER_GRACE_MS,
        busySince: () => operations.oldestStart(),
      });
      if (removed > 0) {
        metrics.count(metricNames.leftoversRemoved, {}, removed);
        logger.info('removed crash leftovers', { files: removed });
      }
    };
    // Before any consumer starts: what is there now was left by an earlier run or another process.
    await sweepLeftoversNow();
    timers.push(
      setInterval(() => {
        sweepLeftoversNow().catch((err) =>
          logger.warn('could not sweep crash leftovers', { error: toWasmMirrorError(err).message }),
        );
      }, options.leftovers?.intervalMs ?? LEFTOVER_SWEEP_INTERVAL_MS),
    );

    await app.writeKeys();
    mirrorQueue.start((job, meta) => operations.run(() => app.handleMirrorJob(job, meta)), {
      concurrency: 4,
    });
    let firstPublishDone = false;
    publishQueue.startBatch(
      async (requests) => {
        try {
          await operations.run(() => app.publish(requests));
        } finally {
          firstPublishDone = true;
        }
      },
      { maxBatch: 1000, batchWindowMs: 25 },
    );
    // A first manifest (empty if need be) right away, then re-sign well before expiry.
    await publishQueue.send({ kind: 'resign', reason: 'startup' });
    const resignEvery = Math.min(Math.max(options.config.mirror.resignBeforeMs / 4, 1000), 15 * 60_000);
    timers.push(
      setInterval(() => {
        publishQueue.send({ kind: 'resign', reason: 'schedule' }).catch((err) => {
          logger.error('could not schedule a re-sign', { error: String(err) });
        });
      }, resignEvery),
    );
    for (const source of options.config.sources) {
      if (source.reconcileIntervalMs === undefined) continue;
      const run = () =>
        operations
          .run(() => app.reconcile(source.id))
          .catch((err) => logger.error('reconcile failed', { sourceId: source.id, error: String(err) }));
      timers.push(setInterval(run, source.reconcileIntervalMs));
      void run();
    }

    // Replay markers only need to outlive senders' retry windows (as the bucket's lifecycle rule does in AWS).
    const sweep = () =>
      sweepOldFiles(join(dataDir, 'state', 'deliveries'), DELIVERY_MARKER_TTL_MS).catch((err) =>
        logger.warn('could not prune delivery markers', { error: String(err) }),
      );
    timers.push(setInterval(sweep, 3600_000));
    void sweep();

    const health = manifestHealth(deps, () => firstPublishDone);
    // Refused deliveries per source, for the warnings /status (and the status page) shows.
    const activity = new WebhookActivity(options.config.sources.map((s) => s.id));
    server = createMirrorServer({
      store: deps.store,
      receiveWebhook: async (request) => {
        const response = await operations.run(() => app.receiveWebhook(request));
        activity.record(request.sourceId, response.status);
        return response;
      },
      admitWebhook: async (head) => {
        const admission = await app.receiveWebhook.admit(head);
        if (!admission.admitted) activity.record(head.sourceId, admission.response.status);
        return admission;
      },
      health,
      logger,
      metrics,
      ...options.http,
      renderMetrics: async () => {
        await refreshGauges(app, mirrorQueue, publishQueue, metrics);
        return metrics.render();
      },
      status: async () => status(deps, mirrorQueue, publishQueue, failures, activity),
      deadLetters: (query) => deadLetterPage({ mirror: mirrorQueue, publish: publishQueue }, query),
      oci: createOciEndpoint({ store: deps.store, config: options.config, logger }),
    });
    const url = await listen(server, options.port ?? 8080, options.host ?? '127.0.0.1');
    logger.info('wasm mirror listening', { url, dataDir, sources: options.config.sources.map((s) => s.id) });

    const running = server;
    return {
      url,
      deps,
      metrics,
      stop: async () => {
        for (const t of timers) clearInterval(t);
        await new Promise<void>((done) => {
          running.close(() => done());
          running.closeAllConnections();
        });
        await mirrorQueue.stop();
        await publishQueue.stop();
        await lock.release();
      },
    };
  } catch (err) {
    // A failed start (port taken, bad key) must leave nothing running: no timers, no consumers.
    for (const t of timers) clearInterval(t);
    server?.close();
    for (const q of queues) await q.stop();
    await lock.release();
    throw err;
  }
}

/** Removes files under `dir` (one level of subdirectories) last modified more than `maxAgeMs` ago. */
export async function sweepOldFiles(dir: string, maxAgeMs: number, now = Date.now()): Promise<number> {
  let removed = 0;
  const walk = async (path: string, depth: number): Promise<void> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const child = join(path, entry.name);
      if (entry.isDirectory() && depth < 1) await walk(child, depth + 1);
      else if (entry.isFile() && now - (await stat(child)).mtimeMs > maxAgeMs) {
        await rm(child, { force: true });
        removed++;
      }
    }
  };
  await walk(dir, 0);
  return removed;
}

/**
 * `/healthz`: healthy while the newest manifest (latest.json) is unexpired. Before the first
 * publish has run, a missing one is start-up, not a fault. The parsed manifest is reused while
 * latest.json's ETag stays the same, so a probe costs one stat.
 */
export function manifestHealth(
  deps: Pick<PipelineDeps, 'store' | 'clock'>,
  startedUp: () => boolean,
): () => Promise<HealthReport> {
  let cached: { etag: string; version: number; expiresAt: string } | undefined;
  const unhealthy = (reason: string, message: string, extra: Record<string, unknown> = {}): HealthReport => ({
    healthy: false,
    body: { status: 'unhealthy', reason, message, ...extra },
  });
  return async () => {
    let facts: { version: number; expiresAt: string } | undefined;
    try {
      // The v2 index (or, on a mirror that has only v1, latest.json): one small object.
      const info =
        (await deps.store.head(v2Keys.index)) ?? (await deps.store.head(storageKeys.latestManifest));
      if (info !== undefined && cached?.etag === info.etag) facts = cached;
      else if (info !== undefined) {
        const head = await readListingHead(deps.store);
        if (head !== undefined) {
          facts = { version: head.version, expiresAt: head.expiresAt };
          cached = { etag: info.etag, ...facts };
        }
      }
    } catch (err) {
      return unhealthy('manifest-unreadable', toWasmMirrorError(err).message);
    }
    if (facts === undefined) {
      if (!startedUp()) return { healthy: true, body: { status: 'starting' } };
      return unhealthy('manifest-missing', 'no manifest has been published');
    }
    const manifest = { version: facts.version, expiresAt: facts.expiresAt };
    if (!(Date.parse(facts.expiresAt) > deps.clock.now().getTime())) {
      return unhealthy('manifest-expired', `manifest ${facts.version} expired at ${facts.expiresAt}`, {
        manifest,
      });
    }
    return { healthy: true, body: { status: 'ok', manifest } };
  };
}

async function refreshGauges(
  app: MirrorApp,
  mirrorQueue: DiskQueue<MirrorJob>,
  publishQueue: DiskQueue<PublishRequest>,
  metrics: PrometheusRegistry,
): Promise<void> {
  for (const [name, queue] of [
    ['mirror', mirrorQueue],
    ['publish', publishQueue],
  ] as const) {
    const depth = await queue.depth();
    metrics.gauge('queue_messages', depth.ready + depth.delayed, { queue: name, state: 'waiting' });
    metrics.gauge('queue_messages', depth.inFlight, { queue: name, state: 'in_flight' });
    metrics.gauge('dead_letters', depth.dead, { queue: name });
  }
  await app.reportManifest();
}

async function status(
  deps: PipelineDeps,
  mirrorQueue: DiskQueue<MirrorJob>,
  publishQueue: DiskQueue<PublishRequest>,
  failures: FailureEntry[],
  activity: WebhookActivity,
): Promise<unknown> {
  const head = await readListingHead(deps.store);
  const modules = head === undefined ? [] : await listAllEntries(deps.store);
  // Counts, and only the newest dead letters: the rest are paged at /status/dead-letters, so a
  // flood of dead letters cannot make this page (or the memory serving it) grow.
  const newest = await mirrorQueue.listDeadPage({ limit: STATUS_DEAD_LETTERS });
  return {
    mirror: deps.config.mirror.name,
    keyid: await deps.signer.keyId(),
    manifest:
      head === undefined
        ? null
        : {
            version: head.version,
            issuedAt: head.issuedAt,
            expiresAt: head.expiresAt,
            modules: head.entries,
          },
    modules,
    queues: { mirror: await mirrorQueue.depth(), publish: await publishQueue.depth() },
    recentFailures: failures,
    deadLetters: newest.items.map(deadLetterView),
    deadLettersPage: {
      queue: 'mirror',
      shown: newest.items.length,
      total: newest.total,
      next:
        newest.next === undefined
          ? null
          : deadLetterPagePath('mirror', DEAD_LETTER_PAGE_DEFAULT, newest.next),
    },
    sources: await Promise.all(
      deps.config.sources.map(async (s) => ({
        id: s.id,
        type: s.type,
        registry: s.registry,
        webhook: `/hooks/${s.id}`,
        ...(await sourceHealth(s, deps.secrets, activity)),
      })),
    ),
  };
}

/** Dead letters `/status` shows, newest first. */
export const STATUS_DEAD_LETTERS = 20;
const DEAD_LETTER_PAGE_DEFAULT = 100;
const DEAD_LETTER_PAGE_MAX = 1000;

export interface DeadLetterQueues {
  mirror: DiskQueue<MirrorJob>;
  publish: DiskQueue<PublishRequest>;
}

export interface DeadLetterView {
  messageId: string;
  /** The queued message: a mirror job, or a publish request. */
  job: unknown;
  attempts: number;
  error: { code: string; message: string };
  sentAt: string;
  deadAt: string;
}

export interface DeadLetterPageView {
  queue: keyof DeadLetterQueues;
  /** Dead letters in that queue's area when the page was read. */
  total: number;
  items: DeadLetterView[];
  /** Cursor of the next page, and its path; null on the last page. */
  next: string | null;
  nextPath: string | null;
}

/**
 * `GET /status/dead-letters?queue=mirror|publish&limit=N&cursor=ID`: one page of a queue's dead
 * letters, newest first (`limit` 1–1000, default 100; `cursor` is the `next` of the previous
 * page). Reads only the page's dead letters. A bad parameter is a USAGE error (answer 400).
 */
export async function deadLetterPage(
  queues: DeadLetterQueues,
  query: URLSearchParams,
): Promise<DeadLetterPageView> {
  const name = query.get('queue') ?? 'mirror';
  if (name !== 'mirror' && name !== 'publish') {
    throw new WasmMirrorError('USAGE', `queue must be mirror or publish, not ${JSON.stringify(name)}`);
  }
  const limitText = query.get('limit');
  const limit = limitText === null ? DEAD_LETTER_PAGE_DEFAULT : Number(limitText);
  if (limitText !== null && (!/^\d{1,4}$/.test(limitText) || limit < 1 || limit > DEAD_LETTER_PAGE_MAX)) {
    throw new WasmMirrorError('USAGE', `limit must be a whole number from 1 to ${DEAD_LETTER_PAGE_MAX}`);
  }
  const cursor = query.get('cursor') ?? undefined;
  const queue: DiskQueue<unknown> = queues[name];
  const page = await queue.listDeadPage(cursor === undefined ? { limit } : { limit, before: cursor });
  const next = page.next ?? null;
  return {
    queue: name,
    total: page.total,
    items: page.items.map(deadLetterView),
    next,
    nextPath: next === null ? null : deadLetterPagePath(name, limit, next),
  };
}

function deadLetterPagePath(queue: keyof DeadLetterQueues, limit: number, cursor: string): string {
  return `/status/dead-letters?${new URLSearchParams({ queue, limit: String(limit), cursor })}`;
}

function deadLetterView(d: DeadLetter<unknown>): DeadLetterView {
  return {
    messageId: d.messageId,
    job: d.body,
    attempts: d.attempts,
    error: d.lastError,
    sentAt: d.sentAt,
    deadAt: d.deadAt,
  };
}
