/** `wasm-mirror verify`: verify a manifest envelope offline (same checks as the agent) and print it. */
import { readFile } from 'node:fs/promises';
import { readManifestSource } from '../../agent/index.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { loadTrustedKeys, verifyManifest } from '../../core/manifest/index.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const USAGE = `usage: wasm-mirror verify <file|url> --trusted-keys FILE [--mirror-name NAME]

Verifies a DSSE manifest envelope (a file, or an http(s) URL such as
https://mirror/manifests/latest.json) and prints its payload. Exit 0 if it verifies, 1 otherwise.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    'trusted-keys': { type: 'string' },
    'mirror-name': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1)
    throw new WasmMirrorError('USAGE', `give exactly one manifest file or URL\n\n${USAGE}`);
  if (!values['trusted-keys']) throw new WasmMirrorError('USAGE', `--trusted-keys is required\n\n${USAGE}`);
  const keys = loadTrustedKeys(await readKeys(values['trusted-keys']));
  const bytes = await readManifestSource(positionals[0]!);
  const v = verifyManifest(bytes, {
    trustedKeys: keys,
    now: new Date(),
    ...(values['mirror-name'] ? { mirrorName: values['mirror-name'] } : {}),
  });
  io.stderr.write(
    `verified: mirror ${v.payload.mirror}, version ${v.payload.version}, ${v.payload.modules.length} modules, expires ${v.payload.expiresAt}, key ${v.keyid}\n`,
  );
  io.stdout.write(`${JSON.stringify(v.payload, null, 2)}\n`);
  return 0;
}

export async function readKeys(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new WasmMirrorError('TRUSTED_KEYS_INVALID', `cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}
