/**
 * `wasm-mirror mirror <ref>`: mirror one reference now (backfill, registries without webhooks).
 * Safe beside a running server or other `mirror` commands on the same data directory: the module
 * store is create-only and content-addressed; when a server holds the publisher lock the result
 * goes to its publish queue and the command waits until the server lists it; when another
 * command holds it, this one waits for the lock and publishes itself. It never reports success
 * for a module that is not listed in a signed manifest.
 */
import { resolve } from 'node:path';
import { parseDuration } from '../../agent/index.ts';
import { createMirrorApp } from '../../core/app.ts';
import { backoffDelay, sleep } from '../../core/backoff.ts';
import type { MirrorConfig } from '../../core/config.ts';
import type { MirrorJob } from '../../core/domain.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { parseReference } from '../../core/oci/reference.ts';
import type { MirrorOutcome } from '../../core/pipeline/mirror.ts';
import { listedEntriesOf, readListingHead } from '../../core/pipeline/state.ts';
import type { ObjectStore, PublishRequest } from '../../core/ports.ts';
import { silentLogger } from '../../core/ports.ts';
import type { SourceConfig } from '../../core/sources/types.ts';
import { type DataDirLock, lockHolder, tryLockDataDir } from '../../embedded/lock.ts';
import { buildLocalDeps } from '../../embedded/runtime.ts';
import { JsonLinesLogger, PrometheusRegistry } from '../../platform/telemetry.ts';
import { DEFAULT_DATA_DIR, resolveConfig } from '../config-file.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const HELP = `usage: wasm-mirror mirror <ref> [--data DIR] [--config FILE] [--plain-http] [--json] [--verbose]
                          [--wait DURATION]

Mirrors one reference (host/repo:tag or host/repo@sha256:…) into the data directory and
publishes a new signed manifest listing it. The registry must be a configured source's
registry, unless no source names it: then it is mirrored as an ad-hoc source with every
repository allowed (credentials from WASM_MIRROR_USERNAME / WASM_MIRROR_PASSWORD if set).

  --data DIR         data directory (default ${DEFAULT_DATA_DIR})
  --config FILE      config file (default: wasm-mirror.config.yaml if present)
  --plain-http       allow plain http to a registry no source names
  --json             print the result as one JSON line
  --wait DURATION    how long to wait for another publisher on this data directory: a running
                     server to list the module, or another mirror command to release the
                     lock (default 60s); then fail with PUBLISHER_BUSY
  -v, --verbose      log each step to stderr as JSON lines
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    data: { type: 'string', default: DEFAULT_DATA_DIR },
    config: { type: 'string' },
    'plain-http': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', short: 'v', default: false },
    wait: { type: 'string', default: '60s' },
    help: { type: 'boolean', short: 'h' },
  });
  const waitMs = parseDuration(values.wait, '--wait');
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new WasmMirrorError('USAGE', `expected one reference\n\n${HELP}`);
  const ref = parseReference(positionals[0]!);
  const loaded = await resolveConfig(values.config);
  const { config, source } = withSourceFor(loaded.config, ref.registry, values['plain-http'], io.env);
  const dataDir = resolve(values.data);
  const logger = values.verbose ? new JsonLinesLogger({ stream: process.stderr }) : silentLogger;
  const metrics = new PrometheusRegistry({ prefix: 'wasm_mirror_' });
  const { deps } = await buildLocalDeps({ config, dataDir, env: io.env, logger, metrics });

  const job: MirrorJob = {
    sourceId: source.id,
    registry: source.registry,
    repository: ref.repository,
    receivedAt: new Date().toISOString(),
  };
  if (ref.digest !== undefined) job.digest = ref.digest;
  if (ref.tag !== undefined) job.tag = ref.tag;

  // Without a server on this data directory the command publishes itself, and a failed publish
  // fails the command. With one, the record goes to the server's durable publish queue.
  const deadline = Date.now() + waitMs;
  const publisher = await acquirePublisher(dataDir, deadline);
  const lock = 'lock' in publisher ? publisher.lock : undefined;
  let version: number | undefined;
  let outcome: MirrorOutcome;
  try {
    const records: PublishRequest[] = [];
    const app = createMirrorApp(
      lock === undefined ? deps : { ...deps, publishQueue: { send: async (r) => void records.push(r) } },
    );
    outcome = await app.mirror(job);
    if (outcome.status === 'rejected') throw outcome.error;
    if (lock !== undefined) {
      // 'startup' publishes only when there is no manifest yet or it is close to expiry.
      const requests: PublishRequest[] =
        records.length > 0 ? records : [{ kind: 'resign', reason: 'startup' }];
      version = (await app.publish(requests)).version;
    } else if (outcome.status === 'mirrored' || outcome.status === 'already-listed') {
      const listed = outcome.status === 'mirrored' ? outcome.record : outcome;
      version = await waitUntilListed(
        deps.store,
        listed,
        deadline,
        'server' in publisher ? publisher.server : 0,
      );
    }
  } finally {
    await lock?.release();
  }

  const summary = {
    status: outcome.status,
    name: outcome.status === 'mirrored' ? outcome.record.name : outcome.name,
    tag: outcome.status === 'mirrored' ? outcome.record.tag : outcome.tag,
    ociDigest: outcome.status === 'mirrored' ? outcome.record.ociDigest : outcome.ociDigest,
    ...(outcome.status === 'mirrored'
      ? { sha256: outcome.record.sha256, size: outcome.record.size, format: outcome.record.format }
      : {}),
    manifestVersion: version ?? null,
    publishedBy: lock === undefined ? 'running server' : 'this command',
  };
  if (outcome.status === 'stale') version = undefined;
  if (values.json) {
    io.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    io.stdout.write(
      `${summary.status} ${summary.name}${summary.tag ? `:${summary.tag}` : ''}@${summary.ociDigest}\n` +
        (outcome.status === 'mirrored'
          ? `  sha256 ${outcome.record.sha256}  size ${outcome.record.size}  format ${outcome.record.format}\n`
          : '') +
        (version === undefined
          ? '  not listed: the tag has moved on\n'
          : `  listed in manifest version ${version}\n`),
    );
  }
  return 0;
}

/**
 * The publisher lock, or the running server that holds it. Another `mirror` command holding it
 * finishes in seconds: wait for it rather than hand the record to a queue nobody consumes.
 */
async function acquirePublisher(
  dataDir: string,
  deadline: number,
): Promise<{ lock: DataDirLock } | { server: number }> {
  for (let attempt = 1; ; attempt++) {
    const lock = await tryLockDataDir(dataDir, 'mirror');
    if (lock !== undefined) return { lock };
    const holder = await lockHolder(dataDir);
    if (holder?.purpose === 'serve') return { server: holder.pid };
    if (Date.now() >= deadline) {
      throw new WasmMirrorError(
        'PUBLISHER_BUSY',
        `data directory ${dataDir} is being published by process ${holder?.pid ?? '?'} (${holder?.purpose ?? 'unknown'}), which did not finish in time; run again or raise --wait`,
      );
    }
    await sleep(
      Math.min(backoffDelay({ baseMs: 50, maxMs: 1000 }, attempt), Math.max(0, deadline - Date.now())),
    );
  }
}

/** The manifest version that lists the result, once the running server has published it. */
async function waitUntilListed(
  store: ObjectStore,
  wanted: { name: string; tag: string; ociDigest: string },
  deadline: number,
  serverPid: number,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    // The entries first: a head read after them is that listing or a newer one, never an older one.
    const entry = (await listedEntriesOf(store, wanted.name)).find(
      (m) => m.ociDigest === wanted.ociDigest && (wanted.tag === '' || m.tag === wanted.tag),
    );
    const head = await readListingHead(store);
    if (head !== undefined && entry !== undefined) return head.version;
    if (Date.now() >= deadline) {
      throw new WasmMirrorError(
        'PUBLISHER_BUSY',
        `the module is mirrored and queued, but the server on this data directory (process ${serverPid}) has not listed it yet; check its log and /status, or raise --wait`,
      );
    }
    await sleep(
      Math.min(backoffDelay({ baseMs: 50, maxMs: 500 }, attempt), Math.max(0, deadline - Date.now())),
    );
  }
}

const ADHOC_SOURCE = 'cli';

function withSourceFor(
  config: MirrorConfig,
  registry: string,
  plainHttp: boolean,
  env: CliIo['env'],
): { config: MirrorConfig; source: SourceConfig } {
  const host = registry.toLowerCase();
  const configured = config.sources.find((s) => s.registry === host);
  if (configured !== undefined) {
    if (plainHttp && !configured.insecure) {
      throw new WasmMirrorError(
        'INSECURE_NOT_ALLOWED',
        `source '${configured.id}' does not allow plain http to ${host}`,
      );
    }
    return { config, source: configured };
  }
  const source: SourceConfig = {
    id: ADHOC_SOURCE,
    type: 'distribution',
    registry: host,
    insecure: plainHttp,
    repositories: ['**'],
    rateLimitPerMinute: 1,
  };
  if (env.WASM_MIRROR_USERNAME !== undefined && env.WASM_MIRROR_PASSWORD !== undefined) {
    source.credentials = { usernameEnv: 'WASM_MIRROR_USERNAME', passwordEnv: 'WASM_MIRROR_PASSWORD' };
  }
  return { config: { ...config, sources: [...config.sources, source] }, source };
}
