/**
 * `wasm-mirror pull <ref> -o FILE [--plain-http] [--username U --password-stdin] [--json]`:
 * pulls one module out of a registry, whatever its packaging, verifies it and writes exactly its
 * bytes to FILE.
 */
import { resolve } from 'node:path';
import { WasmMirrorError } from '../../core/errors.ts';
import { parseReference } from '../../core/oci/reference.ts';
import type { PulledModule, RegistryTarget } from '../../core/ports.ts';
import { OciWasmPuller } from '../../core/wasm/puller.ts';
import { type CliIo, parseCommandArgs, REGISTRY_LOGIN_OPTIONS, readRegistryLogin } from '../io.ts';

const HELP = `usage: wasm-mirror pull <reference> -o FILE [options]

Pulls one WebAssembly module (Wasm artifact, compat image, CNCF Wasm artifact, or an index of
them), checks its digests and validates it, and writes exactly the module's bytes to FILE.

  <reference>          e.g. ghcr.io/acme/filter:1.0, oci://127.0.0.1:5000/plugins/x@sha256:…
  -o, --output FILE    where to write the module (written atomically)
  --plain-http         talk plain http to the registry (local or test registries)
  --username U         registry user name; the password is read from standard input
  --password-stdin     read the password from standard input (needs --username)
  --json               print the result as JSON
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    output: { type: 'string', short: 'o' },
    'plain-http': { type: 'boolean' },
    ...REGISTRY_LOGIN_OPTIONS,
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    io.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1)
    throw new WasmMirrorError('USAGE', 'expected exactly one reference\n\n' + HELP);
  if (values.output === undefined || values.output === '')
    throw new WasmMirrorError('USAGE', 'missing -o FILE');
  const credentials = await readRegistryLogin(values, io, { fromEnv: false });

  const ref = parseReference(positionals[0]!);
  const target: RegistryTarget = {
    registry: ref.registry,
    repository: ref.repository,
    reference: ref.reference,
    insecure: values['plain-http'] === true,
  };
  if (credentials !== undefined) target.credentials = credentials;

  const file = resolve(values.output);
  const progress = io.stderr.isTTY === true ? progressPrinter(io) : undefined;
  let pulled: PulledModule;
  try {
    pulled = await new OciWasmPuller().pullToFile(
      target,
      file,
      progress === undefined ? {} : { onProgress: progress.update },
    );
  } finally {
    progress?.done();
  }

  const reference = `${ref.registry}/${ref.repository}${ref.digest !== undefined ? `@${ref.digest}` : `:${ref.tag}`}`;
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify({ reference, file, ...pulled })}\n`);
  } else {
    const rows: [string, string][] = [
      ['sha256', pulled.sha256],
      ['size', String(pulled.size)],
      ['format', pulled.format],
      ['kind', pulled.kind],
      ['abi', pulled.abi ?? '-'],
      ['manifest', pulled.ociDigest],
      ['file', file],
    ];
    io.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(10)}${v}\n`).join(''));
  }
  return 0;
}

/** A one-line progress bar on a terminal, redrawn at most five times a second. */
function progressPrinter(io: CliIo) {
  let last = 0;
  let shown = false;
  const mib = (n: number) => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  return {
    update: (received: number, total: number | undefined) => {
      const now = Date.now();
      if (now - last < 200 && received !== total) return;
      last = now;
      shown = true;
      const pct = total ? ` ${Math.floor((received / total) * 100)}%` : '';
      io.stderr.write(`\rpulling ${mib(received)}${total ? ` / ${mib(total)}` : ''}${pct}\x1b[K`);
    },
    done: () => {
      if (shown) io.stderr.write('\n');
    },
  };
}
