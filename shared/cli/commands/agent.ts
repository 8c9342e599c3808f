/**
 * `wasm-mirror agent`: verify the mirror's signed manifest and sync its modules into a directory;
 * with --serve, also serve what it holds to the agents of a cluster.
 */
import { readFile } from 'node:fs/promises';
import {
  parseDuration,
  runAgentLoop,
  startMetricsServer,
  startServing,
  WasmMirrorAgent,
} from '../../agent/index.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { loadTrustedKeys } from '../../core/manifest/index.ts';
import type { Fields, Logger } from '../../core/ports.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const USAGE = `usage: wasm-mirror agent --mirror-url URL --mirror-name NAME --trusted-keys FILE --dir DIR
                          [--once | --interval 30s] [--select GLOB]... [--metrics-addr HOST:PORT]
                          [--serve HOST:PORT] [--concurrency 8] [--gc-grace 24h] [--stall-timeout 5s]

Verifies the mirror's signed index (<mirror>/manifests/v2/index.json) against the trusted keys (a
PEM with one or more public keys, or a keys.json), reads the parts of the manifest its selection
needs, and syncs the selected modules into DIR/modules/sha256/<hex>.wasm. A mirror without v2 is
read through manifests/latest.json (v1) until this agent has accepted a v2 index. DIR/manifest.json
holds the selected entries as a v1 payload. On any failure the last good set stays.
  --once            sync once and exit 0 (in sync) or 1 (failed; the error code is printed)
  --interval D      sync every D (default 30s) with jitter, backing off on errors
  --select GLOB     only download matching module names (repeatable; '*' within a path segment,
                    '**' across; 'name:tag' globs also match the tag). A name without a wildcard
                    also limits which parts of the manifest are read
  --metrics-addr A  serve Prometheus metrics at http://A/metrics, /healthz and /readyz (a bare
                    port binds 127.0.0.1)
  --serve A         serve what this agent holds, read-only, in the mirror's layout, at http://A/
                    (a bare port binds 127.0.0.1); agents pointed at it verify it as the mirror.
                    It serves only what it selected: agents below must select a subset
  --stall-timeout D a module download that receives nothing for D fails and is retried on the
                    next sync (default 5s)
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      'mirror-url': { type: 'string' },
      'mirror-name': { type: 'string' },
      'trusted-keys': { type: 'string' },
      dir: { type: 'string' },
      once: { type: 'boolean' },
      interval: { type: 'string' },
      select: { type: 'string', multiple: true },
      'metrics-addr': { type: 'string' },
      serve: { type: 'string' },
      concurrency: { type: 'string' },
      'gc-grace': { type: 'string' },
      'stall-timeout': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  for (const flag of ['mirror-url', 'mirror-name', 'trusted-keys', 'dir'] as const) {
    if (!values[flag]) throw new WasmMirrorError('USAGE', `--${flag} is required\n\n${USAGE}`);
  }
  if (values.once && values.interval !== undefined) {
    throw new WasmMirrorError('USAGE', '--once and --interval exclude each other');
  }
  if (values.once && values.serve !== undefined) {
    throw new WasmMirrorError('USAGE', '--serve needs the sync loop; it excludes --once');
  }
  const mirrorUrl = values['mirror-url']!;
  if (!/^https?:\/\/[^/]/i.test(mirrorUrl))
    throw new WasmMirrorError('USAGE', '--mirror-url must be an http(s) URL');
  const intervalMs = parseDuration(values.interval ?? '30s', '--interval');
  const concurrency = values.concurrency === undefined ? 8 : Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    throw new WasmMirrorError('USAGE', '--concurrency must be an integer from 1 to 256');
  }
  const keysFile = values['trusted-keys']!;
  let keysText: string;
  try {
    keysText = await readFile(keysFile, 'utf8');
  } catch (err) {
    throw new WasmMirrorError('TRUSTED_KEYS_INVALID', `cannot read ${keysFile}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const logger = stderrLogger(io);
  const agent = new WasmMirrorAgent({
    mirrorUrl,
    mirrorName: values['mirror-name']!,
    trustedKeys: loadTrustedKeys(keysText),
    dir: values.dir!,
    select: (values.select ?? []).flatMap((s) => s.split(',')).filter((s) => s !== ''),
    concurrency,
    keepDocuments: values.serve !== undefined,
    ...(values['gc-grace'] ? { gcGraceMs: parseDuration(values['gc-grace'], '--gc-grace') } : {}),
    ...(values['stall-timeout']
      ? { stallTimeoutMs: parseDuration(values['stall-timeout'], '--stall-timeout') }
      : {}),
    logger,
  });
  const metrics = values['metrics-addr']
    ? await startMetricsServer(values['metrics-addr'], agent.metrics, { ready: () => agent.ready() })
    : undefined;
  if (metrics) logger.info('serving metrics', { url: metrics.url });
  let serving: Awaited<ReturnType<typeof startServing>> | undefined;
  try {
    serving = values.serve ? await startServing(values.serve, values.dir!) : undefined;
  } catch (err) {
    agent.close();
    await metrics?.close();
    throw err;
  }
  if (serving) logger.info('serving the mirror layout', { url: serving.url });
  try {
    if (values.once) {
      const r = await agent.syncOnce();
      io.stdout.write(
        `in sync with manifest version ${r.version}: ${r.downloaded} downloaded, ${r.cached} cached, ${r.removed} removed\n`,
      );
      return 0;
    }
    const controller = new AbortController();
    const stop = () => controller.abort();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await runAgentLoop(agent, {
        intervalMs,
        signal: controller.signal,
        onResult: (r) => {
          if (r instanceof WasmMirrorError) return; // already logged by the agent
          if (!r.notModified || r.downloaded > 0 || r.removed > 0) {
            logger.info('in sync', { version: r.version, downloaded: r.downloaded, removed: r.removed });
          }
        },
      });
    } finally {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
    }
    return 0;
  } finally {
    agent.close();
    await serving?.close();
    await metrics?.close();
  }
}

function stderrLogger(io: CliIo): Logger {
  const line = (level: string, message: string, fields?: Fields) => {
    const extra = fields
      ? Object.entries(fields)
          .map(([k, v]) => ` ${k}=${typeof v === 'string' && !/\s/.test(v) ? v : JSON.stringify(v)}`)
          .join('')
      : '';
    io.stderr.write(`${new Date().toISOString()} ${level} ${message}${extra}\n`);
  };
  return {
    debug: () => {},
    info: (m, f) => line('info', m, f),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}
