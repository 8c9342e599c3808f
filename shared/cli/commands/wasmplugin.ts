/** `wasm-mirror wasmplugin`: print an Istio WasmPlugin pinned to the mirror URL and the module's sha256. */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { readManifestSource } from '../../agent/index.ts';
import type { ManifestModule, ManifestPayload } from '../../core/domain.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { loadTrustedKeys, validatePayload, verifyManifest } from '../../core/manifest/index.ts';
import { decodeUtf8Strict, parseStrictJson } from '../../core/strict-json.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';
import { readKeys } from './verify.ts';

const USAGE = `usage: wasm-mirror wasmplugin <name[:tag]> --mirror-url URL [--from-manifest FILE]
                               [--trusted-keys FILE --mirror-name NAME] [--namespace NS]
                               [--local-dir DIR] [--resource-name NAME]

Prints an extensions.istio.io/v1alpha1 WasmPlugin whose url is <mirror>/modules/sha256/<hex>.wasm
(or file://DIR/modules/sha256/<hex>.wasm with --local-dir, the agent's directory) and whose
sha256 is the module hash, which Istio checks for http(s) and file URLs.
The module is looked up in --from-manifest (the agent's DIR/manifest.json, or an envelope, which
is then verified) or else in <mirror>/manifests/latest.json, verified with --trusted-keys and
--mirror-name.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    'mirror-url': { type: 'string' },
    'from-manifest': { type: 'string' },
    'trusted-keys': { type: 'string' },
    'mirror-name': { type: 'string' },
    namespace: { type: 'string' },
    'local-dir': { type: 'string' },
    'resource-name': { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1)
    throw new WasmMirrorError('USAGE', `give exactly one module name[:tag]\n\n${USAGE}`);
  const mirrorUrl = values['mirror-url']?.replace(/\/+$/, '');
  if (mirrorUrl === undefined && values['local-dir'] === undefined) {
    throw new WasmMirrorError('USAGE', `--mirror-url is required\n\n${USAGE}`);
  }
  if (mirrorUrl !== undefined && !/^https?:\/\/[^/]/i.test(mirrorUrl)) {
    throw new WasmMirrorError('USAGE', '--mirror-url must be an http(s) URL');
  }
  const { name, tag } = splitReference(positionals[0]!);

  let payload: ManifestPayload;
  if (values['from-manifest'] !== undefined) {
    payload = await loadLocalManifest(values['from-manifest'], values['trusted-keys'], values['mirror-name']);
  } else {
    if (mirrorUrl === undefined || !values['trusted-keys'] || !values['mirror-name']) {
      throw new WasmMirrorError(
        'USAGE',
        'without --from-manifest, --mirror-url, --trusted-keys and --mirror-name are needed to verify latest.json',
      );
    }
    const bytes = await readManifestSource(`${mirrorUrl}/manifests/latest.json`);
    payload = verifyManifest(bytes, {
      trustedKeys: loadTrustedKeys(await readKeys(values['trusted-keys'])),
      mirrorName: values['mirror-name'],
      now: new Date(),
    }).payload;
  }

  const m = pickModule(payload, name, tag);
  const url =
    values['local-dir'] !== undefined
      ? pathToFileURL(resolve(values['local-dir'], 'modules', 'sha256', `${m.sha256}.wasm`)).href
      : `${mirrorUrl}/modules/sha256/${m.sha256}.wasm`;
  const doc = {
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'WasmPlugin',
    metadata: {
      name: values['resource-name'] ?? resourceName(m.name),
      namespace: values.namespace ?? 'istio-system',
      annotations: {
        'wasm-mirror/module': `${m.name}:${m.tag}`,
        'wasm-mirror/oci-digest': m.ociDigest,
        'wasm-mirror/manifest-version': String(payload.version),
      },
    },
    spec: {
      url,
      sha256: m.sha256,
      // The URL names the content by hash, so a cached copy can never be stale.
      imagePullPolicy: 'IfNotPresent',
    },
  };
  io.stdout.write(stringify(doc, { lineWidth: 0 }));
  return 0;
}

/** `host[:port]/repo[:tag]`: a tag is a `:` after the last `/`. */
export function splitReference(ref: string): { name: string; tag: string | undefined } {
  const at = ref.lastIndexOf(':');
  if (at > ref.lastIndexOf('/')) return { name: ref.slice(0, at), tag: ref.slice(at + 1) };
  return { name: ref, tag: undefined };
}

function pickModule(payload: ManifestPayload, name: string, tag: string | undefined): ManifestModule {
  const same = payload.modules.filter((m) => m.name === name);
  const tags = same.map((m) => m.tag || '(digest)').join(', ');
  if (same.length === 0)
    throw new WasmMirrorError('NOT_FOUND', `${name} is not in manifest version ${payload.version}`);
  const chosen =
    tag !== undefined
      ? same.find((m) => m.tag === tag)
      : same.length === 1
        ? same[0]
        : same.find((m) => m.tag === 'latest');
  if (chosen === undefined) {
    throw new WasmMirrorError(
      tag === undefined ? 'USAGE' : 'NOT_FOUND',
      tag === undefined
        ? `${name} has several tags (${tags}); name one`
        : `${name}:${tag} is not listed (tags: ${tags})`,
    );
  }
  return chosen;
}

async function loadLocalManifest(
  file: string,
  keysFile: string | undefined,
  mirrorName: string | undefined,
): Promise<ManifestPayload> {
  const bytes = await readManifestSource(file);
  let doc: unknown;
  try {
    doc = parseStrictJson(decodeUtf8Strict(bytes), { maxDepth: 8 });
  } catch (err) {
    throw new WasmMirrorError('SCHEMA_ERROR', `${file}: ${(err as Error).message}`, { cause: err });
  }
  if (typeof doc === 'object' && doc !== null && 'payloadType' in doc) {
    // An envelope: verify it like the agent would.
    if (!keysFile)
      throw new WasmMirrorError('USAGE', `${file} is a signed envelope; give --trusted-keys to verify it`);
    return verifyManifest(bytes, {
      trustedKeys: loadTrustedKeys(await readKeys(keysFile)),
      now: new Date(),
      ...(mirrorName ? { mirrorName } : {}),
    }).payload;
  }
  // The agent's DIR/manifest.json: a payload the agent verified before writing it.
  const payload = validatePayload(doc);
  if (mirrorName && payload.mirror !== mirrorName) {
    throw new WasmMirrorError(
      'WRONG_MIRROR',
      `${file} is for mirror "${payload.mirror}", expected "${mirrorName}"`,
    );
  }
  return payload;
}

/** A DNS-1123 name from the module's last path segment. */
function resourceName(moduleName: string): string {
  const base = moduleName.split('/').pop() ?? moduleName;
  const cleaned = base
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return cleaned || 'wasm-plugin';
}
