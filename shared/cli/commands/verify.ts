/** `wasm-mirror verify`: verify a manifest envelope offline (same checks as the agent) and print it. */
import { readFile } from 'node:fs/promises';
import { readManifestSource } from '../../agent/index.ts';
import { isWasmMirrorError, WasmMirrorError } from '../../core/errors.ts';
import { loadTrustedKeys } from '../../core/manifest/index.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';
import { readVerifiedListing, type VerifiedListing } from '../listing.ts';

const USAGE = `usage: wasm-mirror verify <file|url> --trusted-keys FILE [--mirror-name NAME] [--mirror-url URL]

Verifies a signed manifest and prints what it lists, with the agent's checks. Exit 0 if it
verifies, 1 otherwise. Given a v2 index (https://mirror/manifests/v2/index.json, or that file in
a data directory) it verifies the index and every node it pins, and prints the whole list in v1's
shape; given a v1 envelope (manifests/latest.json, manifests/<version>.json) it prints its payload.

  --trusted-keys FILE   the mirror's public keys (keys.json or PEM), pinned out of band
  --mirror-name NAME    refuse a manifest signed for another mirror
  --mirror-url URL      where a v2 index file's nodes are fetched from, when it is not the
                        index's own URL or inside a data directory
The agent's DIR/manifest.json is not an envelope but the bare payload, with no signature left to
verify: pass the mirror's manifests/<version>.json it came from instead.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    'trusted-keys': { type: 'string' },
    'mirror-name': { type: 'string' },
    'mirror-url': { type: 'string' },
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
  const source = positionals[0]!;
  const bytes = await readManifestSource(source);
  let v: VerifiedListing;
  try {
    v = await readVerifiedListing(source, bytes, {
      trustedKeys: keys,
      mirrorName: values['mirror-name'],
      mirrorUrl: values['mirror-url'],
    });
  } catch (err) {
    throw isWasmMirrorError(err, 'ENVELOPE_MALFORMED') ? (barePayloadError(source, bytes, err) ?? err) : err;
  }
  io.stderr.write(
    `verified: mirror ${v.payload.mirror}, version ${v.payload.version}, ${v.payload.modules.length} modules, expires ${v.payload.expiresAt}, key ${v.keyid}, manifest ${v.format}\n`,
  );
  io.stdout.write(`${JSON.stringify(v.payload, null, 2)}\n`);
  return 0;
}

/**
 * The agent's DIR/manifest.json is the payload alone, with nothing left to verify; said plainly,
 * since "envelope malformed" does not tell the user which file to pass instead.
 */
function barePayloadError(source: string, bytes: Uint8Array, cause: unknown): WasmMirrorError | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || 'payloadType' in doc) return undefined;
  const { type, version } = doc as Record<string, unknown>;
  if (typeof type !== 'string' || !/^wasm-mirror\.[\w./+-]{1,80}$/.test(type)) return undefined;
  const numbered = typeof version === 'number' ? `manifests/${version}.json` : 'manifests/<version>.json';
  return new WasmMirrorError(
    'ENVELOPE_MALFORMED',
    `${source} is a bare ${type} payload (such as the agent's DIR/manifest.json), not a signed envelope: it carries no signature to verify. ` +
      `Pass the envelope it came from instead: <mirror>/${numbered}, or <mirror>/manifests/latest.json for the newest.`,
    { cause },
  );
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
