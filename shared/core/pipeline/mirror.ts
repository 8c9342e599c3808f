/**
 * The mirror job: resolve a reference on the source's registry, pull and validate the module,
 * store it under its sha256, keep the upstream manifests and blobs the pull verified (so the
 * mirror can serve the artifact itself as a registry), and hand a record to the publisher.
 * Idempotent, because queues deliver at least once: storage is content-addressed and
 * create-only, and a reference already listed with the same digest is skipped.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type MirrorJob, type ModuleFacts, type ModuleRecord, SHA256_HEX } from '../domain.ts';
import {
  type ErrorCode,
  isFilesystemError,
  isWasmMirrorError,
  storageFailure,
  toWasmMirrorError,
  WasmMirrorError,
} from '../errors.ts';
import { matchesAny } from '../glob.ts';
import { metricNames } from '../metrics.ts';
import type { DeliveryMeta, PulledModule, RegistryTarget, VerifiedContent } from '../ports.ts';
import type { SourceConfig } from '../sources/types.ts';
import { cacheControls, type DigestNoteKind, storageKeys } from '../storage-keys.ts';
import { type PipelineDeps, resolveCredentials } from './context.ts';
import { ociNoteHash, ociNoteOf, writeOciNote } from './oci-view.ts';
import { listedEntriesOf } from './state.ts';

export type MirrorDeps = Pick<
  PipelineDeps,
  | 'config'
  | 'store'
  | 'publishQueue'
  | 'puller'
  | 'secrets'
  | 'clock'
  | 'logger'
  | 'metrics'
  | 'scratchDir'
  | 'registryCredentials'
> & {
  /** Called once for a job that failed for good (not Wasm, not allowed, …): status pages show these. */
  onPermanentFailure?: (job: MirrorJob, error: WasmMirrorError) => void | Promise<void>;
};

export type MirrorOutcome =
  /** `pulled` is false when the bytes were mirrored before and only the listing was new. */
  | { status: 'mirrored'; record: ModuleRecord; pulled: boolean }
  | { status: 'already-listed'; name: string; tag: string; ociDigest: string }
  /** The tag no longer points at the job's digest: a late or replayed delivery, never listed. */
  | { status: 'stale'; name: string; tag: string; ociDigest: string; current: string }
  | { status: 'rejected'; error: WasmMirrorError };

/**
 * A delivery, and the caller's deadline: every registry request the job makes is aborted when
 * `signal` fires (a function that must answer before its own timeout), failing retryably.
 */
export interface MirrorRunMeta extends DeliveryMeta {
  signal?: AbortSignal;
}

/** Queue handler: permanent failures are recorded and acknowledged; transient ones throw to be retried. */
export function createMirrorHandler(
  deps: MirrorDeps,
  mirror: ReturnType<typeof createMirror> = createMirror(deps),
): (job: MirrorJob, meta?: MirrorRunMeta) => Promise<void> {
  return async (job, meta) => {
    const outcome = await mirror(job, meta);
    if (outcome.status === 'rejected') {
      if (outcome.error.retryable) throw outcome.error;
      await deps.onPermanentFailure?.(job, outcome.error);
    }
  };
}

export function createMirror(
  deps: MirrorDeps,
): (job: MirrorJob, meta?: MirrorRunMeta) => Promise<MirrorOutcome> {
  // Concurrent jobs for the same repository and digest (a burst of deliveries) wait for the
  // first one, then find its result instead of pulling the same bytes again.
  const pulls = new Map<string, Promise<PulledModule>>();
  return async (job, meta) => {
    const started = performance.now();
    const log = { sourceId: job.sourceId, repository: job.repository, tag: job.tag, digest: job.digest };
    try {
      const outcome = await mirrorOnce(deps, job, pulls, meta?.signal);
      const reason =
        outcome.status === 'mirrored' ? (outcome.pulled ? 'mirrored' : 'reused') : outcome.status;
      deps.metrics.count(metricNames.mirrorResults, { source: job.sourceId, reason });
      deps.logger.info('mirror done', {
        ...log,
        outcome: reason,
        ms: Math.round(performance.now() - started),
      });
      return outcome;
    } catch (err) {
      const error = classifyFailure(err);
      deps.metrics.count(metricNames.mirrorResults, { source: job.sourceId, reason: error.code });
      const fields = {
        ...log,
        code: error.code,
        error: error.message,
        attempt: meta?.attempt,
        retryable: error.retryable,
      };
      if (error.retryable) deps.logger.warn('mirror failed, will retry', fields);
      else deps.logger.error('mirror rejected', fields);
      return { status: 'rejected', error };
    }
  };
}

/**
 * Only failures known to be permanent are acknowledged without a retry. A filesystem error (a full
 * disk, no free descriptors) is a retryable STORAGE_FAILURE: it heals once space is freed. An
 * error nobody classified (a bug, an SDK failure an adapter did not translate, or one wrapped as
 * a plain INTERNAL on the way) is retried too, and ends in the dead-letter area where it is seen.
 */
export function classifyFailure(err: unknown): WasmMirrorError {
  if (err instanceof WasmMirrorError && err.code !== 'INTERNAL') return err;
  // An INTERNAL only wraps something: what it wraps decides.
  const inner = err instanceof WasmMirrorError ? (err.cause ?? err) : err;
  if (isFilesystemError(inner)) return storageFailure('mirror storage', inner);
  if (err instanceof WasmMirrorError && err.retryable) return err;
  return new WasmMirrorError('INTERNAL', err instanceof Error ? err.message : String(err), {
    cause: inner,
    retryable: true,
  });
}

async function mirrorOnce(
  deps: MirrorDeps,
  job: MirrorJob,
  pulls: Map<string, Promise<PulledModule>>,
  signal: AbortSignal | undefined,
): Promise<MirrorOutcome> {
  const request = signal === undefined ? {} : { signal };
  const source = checkJob(deps, job);
  const name = `${source.registry}/${job.repository}`;
  const tag = job.tag ?? '';
  const target: RegistryTarget = {
    registry: source.registry,
    repository: job.repository,
    reference: job.digest ?? job.tag ?? '',
    insecure: source.insecure,
  };
  const credentials = await resolveCredentials(deps, source);
  if (credentials !== undefined) target.credentials = credentials;

  // What the tag points at now, asked of the registry itself: a webhook only says what it pointed
  // at when the delivery was made, and a late retry or a replayed (validly signed) delivery must
  // never move a tag back. Senders without digests (Docker Hub, Quay) need this lookup anyway.
  let ociDigest: string;
  // When the registry last confirmed the tag at this digest: the publisher orders records by it.
  let observedAt: string;
  if (job.tag !== undefined) {
    ociDigest = await resolveTag(deps, { ...target, reference: job.tag }, request, job);
    observedAt = deps.clock.now().toISOString();
    if (job.digest !== undefined && ociDigest !== job.digest) {
      return { status: 'stale', name, tag, ociDigest: job.digest, current: ociDigest };
    }
  } else {
    ociDigest = job.digest!;
    observedAt = deps.clock.now().toISOString();
  }
  const listed = (await listedEntriesOf(deps.store, name)).find(
    (m) => m.ociDigest === ociDigest && (m.tag === tag || tag === ''),
  );
  // Listed before its upstream content was kept (an earlier version): pulled again to keep it.
  if (
    listed !== undefined &&
    (await deps.store.head(storageKeys.module(listed.sha256))) !== undefined &&
    (await hasKeptContent(deps, name, ociDigest))
  ) {
    if (tag !== '') {
      // Nothing to pull, but the publisher learns the tag was seen here now: a record about an
      // older observation (a late push of another digest, a re-driven message) must then lose.
      const { kind = 'module', ...entry } = listed;
      await deps.publishQueue.send({ kind: 'record', record: { ...entry, kind, observedAt } });
    }
    return { status: 'already-listed', name, tag: listed.tag, ociDigest };
  }

  // Rejected before for what the bytes are (a reconcile loop or a redelivered webhook would
  // otherwise download a non-Wasm artifact again and again).
  const rejected = await readRejection(deps, name, ociDigest);
  if (rejected !== undefined) throw rejected;

  // Mirrored before (another tag, a rollback to an earlier digest, a duplicate whose publish is
  // still queued) or being pulled right now by another job: no second pull, just list it.
  const known = await readPulledIndex(deps, name, ociDigest);
  let pulled = known;
  let pulledHere = false;
  if (pulled === undefined) {
    const pullKey = `${name}@${ociDigest}`;
    let pull = pulls.get(pullKey);
    if (pull === undefined) {
      pull = pullAndStore(deps, target, ociDigest, signal);
      pulledHere = true;
      pulls.set(pullKey, pull);
      pull.then(
        () => pulls.delete(pullKey),
        () => pulls.delete(pullKey),
      );
    }
    try {
      pulled = await pull;
    } catch (err) {
      if (pulledHere) await recordRejection(deps, name, ociDigest, err);
      throw err;
    }
    // A pull takes time, and a newer push of the same tag may have been mirrored and published
    // meanwhile: ask again, so this (now older) record is never published after the newer one.
    if (job.tag !== undefined) {
      const current = await deps.puller.resolveDigest({ ...target, reference: job.tag }, request);
      if (current !== ociDigest) return { status: 'stale', name, tag, ociDigest, current };
      observedAt = deps.clock.now().toISOString();
    }
  }
  const record: ModuleRecord = {
    name,
    tag,
    ociDigest,
    sha256: pulled.sha256,
    size: pulled.size,
    format: pulled.format,
    kind: pulled.kind,
    // The listed entry's time is the observation, so the publisher can order by it.
    mirroredAt: observedAt,
    observedAt,
  };
  if (pulled.abi !== undefined) record.abi = pulled.abi;
  // No dedupe id: a tag that moves A → B → A must publish A again; the publisher ignores records
  // that change nothing.
  await deps.publishQueue.send({ kind: 'record', record });
  return { status: 'mirrored', record, pulled: pulledHere };
}

/** A note the mirror wrote itself; unreadable means unknown, never an error. */
async function readDigestNote(
  deps: MirrorDeps,
  kind: DigestNoteKind,
  name: string,
  ociDigest: string,
): Promise<Record<string, unknown> | undefined> {
  const found = await deps.store.getBytes(storageKeys.digestNote(kind, name, ociDigest), 64 * 1024);
  if (found === undefined) return undefined;
  try {
    const value: unknown = JSON.parse(Buffer.from(found.bytes).toString('utf8'));
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** What a manifest digest of a repository extracted to, while those bytes are really stored. */
async function readPulledIndex(
  deps: MirrorDeps,
  name: string,
  ociDigest: string,
): Promise<PulledModule | undefined> {
  const entry = (await readDigestNote(deps, 'pulled', name, ociDigest)) as Partial<PulledModule> | undefined;
  if (entry?.ociDigest !== ociDigest || typeof entry.sha256 !== 'string' || !SHA256_HEX.test(entry.sha256)) {
    return undefined;
  }
  const module = await deps.store.head(storageKeys.module(entry.sha256));
  if (module === undefined || module.size !== entry.size) return undefined;
  return (await hasKeptContent(deps, name, ociDigest)) ? (entry as PulledModule) : undefined;
}

/** Whether intake kept the upstream content of this digest (its note is written last). */
async function hasKeptContent(deps: MirrorDeps, name: string, ociDigest: string): Promise<boolean> {
  return (await deps.store.head(storageKeys.digestNote('oci', name, ociDigest))) !== undefined;
}

/** Failures that depend only on the bytes behind a digest: the same digest fails the same way. */
const CONTENT_FAILURES = new Set<string>([
  'NOT_WASM',
  'INVALID_WASM',
  'UNSUPPORTED_FORMAT',
  'UNSUPPORTED_MEDIA_TYPE',
  'UNSAFE_ARCHIVE',
  'DECOMPRESSION_BOMB',
  'SIZE_EXCEEDED',
]);

async function recordRejection(
  deps: MirrorDeps,
  name: string,
  ociDigest: string,
  err: unknown,
): Promise<void> {
  if (!(err instanceof WasmMirrorError) || err.retryable || !CONTENT_FAILURES.has(err.code)) return;
  const entry = { code: err.code, message: err.message, maxModuleBytes: deps.config.mirror.maxModuleBytes };
  await deps.store
    .put(storageKeys.digestNote('rejected', name, ociDigest), Buffer.from(JSON.stringify(entry)), {
      contentType: 'application/json',
    })
    .catch((e) => deps.logger.warn('could not record a rejection', { error: toWasmMirrorError(e).message }));
}

async function readRejection(
  deps: MirrorDeps,
  name: string,
  ociDigest: string,
): Promise<WasmMirrorError | undefined> {
  const entry = await readDigestNote(deps, 'rejected', name, ociDigest);
  // A raised size cap deserves a fresh look.
  if (
    entry === undefined ||
    typeof entry.code !== 'string' ||
    !CONTENT_FAILURES.has(entry.code) ||
    entry.maxModuleBytes !== deps.config.mirror.maxModuleBytes
  ) {
    return undefined;
  }
  return new WasmMirrorError(entry.code as ErrorCode, `${String(entry.message)} (rejected before)`);
}

async function pullAndStore(
  deps: MirrorDeps,
  target: RegistryTarget,
  ociDigest: string,
  signal: AbortSignal | undefined,
): Promise<PulledModule> {
  const id = randomUUID();
  const staged = join(deps.scratchDir, `pull-${id}.wasm`);
  let content: VerifiedContent[] | undefined;
  try {
    const pulled = await deps.puller.pullToFile({ ...target, reference: ociDigest }, staged, {
      maxModuleBytes: deps.config.mirror.maxModuleBytes,
      ...(signal === undefined ? {} : { signal }),
      // Beside the module in the scratch directory, named so a crash's leftovers are swept.
      keepContent: { stagePath: (digest) => join(deps.scratchDir, `pull-${id}.${digest.slice(7)}.blob`) },
    });
    content = pulled.content;
    if (pulled.ociDigest !== ociDigest) {
      throw new WasmMirrorError('DIGEST_MISMATCH', `registry served ${pulled.ociDigest} for ${ociDigest}`);
    }
    const { content: _kept, ...facts } = pulled;
    await storeModule(deps, staged, facts);
    const name = `${target.registry}/${target.repository}`;
    if (content !== undefined) await keepContent(deps, name, ociDigest, content);
    await deps.store.put(
      storageKeys.digestNote('pulled', name, ociDigest),
      Buffer.from(JSON.stringify(facts)),
      {
        contentType: 'application/json',
      },
    );
    return facts;
  } finally {
    await rm(staged, { force: true });
    for (const c of content ?? []) {
      if (!(c.body instanceof Uint8Array)) await rm(c.body.path, { force: true });
    }
  }
}

/**
 * Stores what the pull verified under `blobs/sha256/<hex>`, exactly the upstream bytes with
 * their media type, then the note of what this digest reaches: serving reads only the note, so
 * it is written once every byte it names is in place. The store checks each sha256 again.
 *
 * Each blob's reference marker (`state/oci-refs/<hex>/<note hash>`) comes before the blob is
 * relied on: garbage collection deletes a blob only when it finds no reference still needed, so
 * a collection that lists the markers from then on sees this use.
 */
async function keepContent(
  deps: MirrorDeps,
  name: string,
  ociDigest: string,
  content: VerifiedContent[],
): Promise<void> {
  if (content[0]?.digest !== ociDigest) {
    throw new WasmMirrorError('INTERNAL', `kept content of ${ociDigest} does not start with its manifest`);
  }
  const noteHash = ociNoteHash(name, ociDigest);
  const marker = { contentType: 'application/octet-stream' };
  for (const c of content) {
    const hex = c.digest.slice('sha256:'.length);
    const key = storageKeys.blob(hex);
    // Replaced rather than create-only: its time tells garbage collection this use is recent.
    await deps.store.put(storageKeys.blobRef(hex, noteHash), new Uint8Array(), marker);
    const existing = await deps.store.head(key);
    if (existing !== undefined) {
      if (existing.size === c.size) continue;
      // Never served: a note must not point at bytes other than the digest's.
      throw new WasmMirrorError('STORAGE_FAILURE', `stored ${key} is ${existing.size} bytes, not ${c.size}`);
    }
    // Only a blob stored with this marker may be deleted: notes kept before references existed
    // may reach an older one without saying so.
    await deps.store.put(storageKeys.blobCreated(hex), new Uint8Array(), marker);
    try {
      await deps.store.create(key, c.body, {
        contentType: c.mediaType,
        sha256: hex,
        cacheControl: cacheControls.immutable,
      });
    } catch (err) {
      // Content-addressed: whoever wrote it first wrote the same bytes.
      if (!isWasmMirrorError(err, 'ALREADY_EXISTS')) throw err;
    }
  }
  await writeOciNote(deps.store, ociNoteOf(name, ociDigest, content));
}

async function storeModule(deps: MirrorDeps, staged: string, pulled: ModuleFacts): Promise<boolean> {
  const key = storageKeys.module(pulled.sha256);
  if ((await deps.store.head(key)) !== undefined) return false;
  try {
    await deps.store.create(
      key,
      { path: staged, size: pulled.size },
      {
        contentType: 'application/wasm',
        sha256: pulled.sha256,
        cacheControl: cacheControls.immutable,
      },
    );
    return true;
  } catch (err) {
    // Content-addressed: whoever wrote it first wrote the same bytes.
    if (isWasmMirrorError(err, 'ALREADY_EXISTS')) return false;
    throw err;
  }
}

/** Defence in depth: parsers already pin the host and check the allow-list; a queued job is re-checked. */
function checkJob(deps: MirrorDeps, job: MirrorJob): SourceConfig {
  const source = deps.config.sources.find((s) => s.id === job.sourceId);
  if (source === undefined) {
    throw new WasmMirrorError('REGISTRY_NOT_ALLOWED', `no source '${job.sourceId}' in the config`);
  }
  if (job.registry.toLowerCase() !== source.registry) {
    throw new WasmMirrorError(
      'REGISTRY_NOT_ALLOWED',
      `job names registry ${job.registry}, source pins ${source.registry}`,
    );
  }
  if (!matchesAny(source.repositories, job.repository)) {
    throw new WasmMirrorError(
      'REGISTRY_NOT_ALLOWED',
      `repository ${job.repository} is not in source '${source.id}''s allow-list (repositories: ${source.repositories.map((g) => JSON.stringify(g)).join(', ')}); add a glob that matches it to that source's repositories to mirror it`,
    );
  }
  if (job.digest === undefined && job.tag === undefined) {
    throw new WasmMirrorError('INVALID_REFERENCE', 'job has neither a tag nor a digest');
  }
  return source;
}

/**
 * What a tag points at now. A push event can arrive before the registry has written the tag
 * (CNCF Distribution notifies from the manifest store, before its handler writes the tag): for a
 * job that names the pushed digest, an unknown tag is retried rather than taken as final; after
 * its retries the job ends in the dead-letter area, never dropped.
 */
async function resolveTag(
  deps: MirrorDeps,
  target: RegistryTarget,
  request: Parameters<MirrorDeps['puller']['resolveDigest']>[1],
  job: MirrorJob,
): Promise<string> {
  try {
    return await deps.puller.resolveDigest(target, request);
  } catch (err) {
    if (job.digest === undefined || !isWasmMirrorError(err, 'MANIFEST_UNKNOWN')) throw err;
    throw new WasmMirrorError(
      'MANIFEST_UNKNOWN',
      `${(err as Error).message} (the push event may have come before the tag was written; retrying)`,
      {
        cause: err,
        retryable: true,
      },
    );
  }
}
