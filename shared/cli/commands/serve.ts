/** `wasm-mirror serve` (= `npm start`): the embedded mirror. */
import { resolve } from 'node:path';
import { WasmMirrorError } from '../../core/errors.ts';
import { startEmbedded } from '../../embedded/runtime.ts';
import { DEFAULT_DATA_DIR, resolveConfig } from '../config-file.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const HELP = `usage: wasm-mirror serve [--port 8080] [--host 127.0.0.1] [--data DIR] [--config FILE] [--rotate-key]

Runs the embedded mirror: webhooks in (POST /hooks/<source>), a durable on-disk queue, the
mirror and publisher, and the mirror itself over HTTP (manifests, modules, keys.json).
Creates its signing key on first start. Stops cleanly on SIGINT/SIGTERM.

  --rotate-key  accept a new signing key when the one that signed the manifests is gone or replaced
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(
    argv,
    {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      data: { type: 'string', default: DEFAULT_DATA_DIR },
      config: { type: 'string' },
      'rotate-key': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new WasmMirrorError('USAGE', `--port ${values.port} is not a port`);
  const { config, path } = await resolveConfig(values.config);
  const dataDir = resolve(values.data);
  const mirror = await startEmbedded({
    config,
    dataDir,
    host: values.host,
    port,
    env: io.env,
    rotateKey: values['rotate-key'] === true,
  });

  const u = mirror.url;
  const lines = [
    `Wasm Mirror '${config.mirror.name}' is serving ${u}`,
    `  manifest  ${u}/manifests/latest.json`,
    `  keys      ${u}/keys.json   (agents pin the key: wasm-mirror agent --trusted-keys …)`,
    `  modules   ${u}/modules/sha256/<sha256>.wasm`,
    `  status    ${u}/status   metrics ${u}/metrics   health ${u}/healthz`,
    `  data      ${dataDir}`,
    `  config    ${path ?? '(none: built-in defaults)'}`,
  ];
  for (const s of config.sources) {
    lines.push(
      `  webhook   POST ${u}/hooks/${s.id}  (${s.type}, pulls from ${s.registry}, ${s.repositories.join(' ')})`,
    );
  }
  // A source without its secret answers every delivery 401: say so now, not at the first push.
  for (const s of config.sources) {
    const name = s.webhookSecretEnv;
    if (name === undefined || (io.env[name] ?? '') !== '') continue;
    lines.push(
      `  warning   ${name} is not set, so source '${s.id}' refuses every webhook (401): set it to the shared secret the registry sends and restart`,
    );
  }
  if (config.sources.length === 0) {
    lines.push(
      '',
      'No webhook sources are configured yet. To mirror on every push, create wasm-mirror.config.yaml:',
      '',
      '  mirror: { name: local-mirror }',
      '  sources:',
      '    - id: local',
      '      type: distribution',
      '      registry: 127.0.0.1:5000',
      '      insecure: true',
      '      repositories: ["**"]',
      '      webhookSecretEnv: LOCAL_HOOK_TOKEN',
      '',
      `and point the registry's notifications at ${u}/hooks/local with "Authorization: Bearer $LOCAL_HOOK_TOKEN".`,
      'Or mirror one reference now: npx wasm-mirror mirror 127.0.0.1:5000/plugins/x:1.0 --plain-http',
    );
  }
  io.stdout.write(`${lines.join('\n')}\n`);

  await new Promise<void>((done) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      done();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  io.stderr.write('stopping…\n');
  await mirror.stop();
  return 0;
}
