/**
 * `wasm-mirror mirror <ref>`: mirror one reference now (backfill, registries without webhooks).
 * Safe beside a running server on the same data directory: the module store is create-only and
 * content-addressed, and when the server holds the publisher lock the result goes to its publish
 * queue instead of being published here.
 */
import { resolve } from 'node:path';
import type { MirrorConfig } from '../../core/config.ts';
import type { MirrorJob } from '../../core/domain.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { parseReference } from '../../core/oci/reference.ts';
import { createMirror } from '../../core/pipeline/mirror.ts';
import { createPublisher } from '../../core/pipeline/publish.ts';
import type { PublishRequest } from '../../core/ports.ts';
import { silentLogger } from '../../core/ports.ts';
import type { SourceConfig } from '../../core/sources/types.ts';
import { tryLockDataDir } from '../../embedded/lock.ts';
import { buildLocalDeps } from '../../embedded/runtime.ts';
import { JsonLinesLogger, PrometheusRegistry } from '../../platform/telemetry.ts';
import { DEFAULT_DATA_DIR, resolveConfig } from '../config-file.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const HELP = `usage: wasm-mirror mirror <ref> [--data DIR] [--config FILE] [--plain-http] [--json] [--verbose]

Mirrors one reference (host/repo:tag or host/repo@sha256:…) into the data directory and
publishes a new signed manifest listing it. The registry must be a configured source's
registry, unless no source names it: then it is mirrored as an ad-hoc source with every
repository allowed (credentials from WASM_MIRROR_USERNAME / WASM_MIRROR_PASSWORD if set).
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    data: { type: 'string', default: DEFAULT_DATA_DIR },
    config: { type: 'string' },
    'plain-http': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    verbose: { type: 'boolean', short: 'v', default: false },
    help: { type: 'boolean', short: 'h' },
  });
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
  const lock = await tryLockDataDir(dataDir, 'mirror');
  let version: number | undefined;
  let outcome: Awaited<ReturnType<ReturnType<typeof createMirror>>>;
  try {
    const records: PublishRequest[] = [];
    const mirror = createMirror(
      lock === undefined ? deps : { ...deps, publishQueue: { send: async (r) => void records.push(r) } },
    );
    outcome = await mirror(job);
    if (outcome.status === 'rejected') throw outcome.error;
    if (lock !== undefined) {
      // 'startup' publishes only when there is no manifest yet or it is close to expiry.
      const requests: PublishRequest[] =
        records.length > 0 ? records : [{ kind: 'resign', reason: 'startup' }];
      version = (await createPublisher(deps)(requests)).version;
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
  if (values.json) {
    io.stdout.write(`${JSON.stringify(summary)}\n`);
  } else {
    io.stdout.write(
      `${summary.status} ${summary.name}${summary.tag ? `:${summary.tag}` : ''}@${summary.ociDigest}\n` +
        (outcome.status === 'mirrored'
          ? `  sha256 ${outcome.record.sha256}  size ${outcome.record.size}  format ${outcome.record.format}\n`
          : '') +
        (version === undefined
          ? '  queued for the running server to publish\n'
          : `  listed in manifest version ${version}\n`),
    );
  }
  return 0;
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
