/** `wasm-mirror wasmplugin`: print an Istio WasmPlugin pinned to the mirror URL and the module's sha256. */
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { isCollection, isMap, isScalar, isSeq, parseDocument, stringify, visit } from 'yaml';
import { readManifestSource } from '../../agent/index.ts';
import { loadConfigFile } from '../../core/config.ts';
import type { ManifestModule, ManifestPayload } from '../../core/domain.ts';
import { isWasmMirrorError, WasmMirrorError } from '../../core/errors.ts';
import { loadTrustedKeys, validatePayload, verifyManifest } from '../../core/manifest/index.ts';
import { isValidOciName } from '../../core/pipeline/oci-view.ts';
import { decodeUtf8Strict, parseStrictJson, StrictJsonError } from '../../core/strict-json.ts';
import { istioLoadsFormat } from '../../core/wasm/formats.ts';
import { OciWasmPuller, type ResolvedWasm } from '../../core/wasm/puller.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';
import { readMirrorListing } from '../listing.ts';
import { readKeys } from './verify.ts';

const DEFAULT_ROOT_NAMESPACE = 'istio-system';
const PHASES = ['AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED_PHASE'] as const;
const FAIL_STRATEGIES = ['FAIL_CLOSE', 'FAIL_OPEN'] as const;
const PULL_POLICIES = ['IfNotPresent', 'Always'] as const;
/** The CRD's limit on spec.targetRefs. */
const MAX_TARGET_REFS = 16;

/** The attachment kinds Istio supports for WasmPlugin targetRefs (istio/api extensions/v1alpha1/wasm.proto). */
const TARGET_KINDS: Record<string, { group: string; rootNamespaceOnly?: boolean }> = {
  Gateway: { group: 'gateway.networking.k8s.io' },
  GatewayClass: { group: 'gateway.networking.k8s.io', rootNamespaceOnly: true },
  Service: { group: '' },
  ServiceEntry: { group: 'networking.istio.io' },
};

export const OPTIONS = {
  'mirror-url': { type: 'string' },
  'local-dir': { type: 'string' },
  'from-manifest': { type: 'string' },
  'trusted-keys': { type: 'string' },
  'mirror-name': { type: 'string' },
  namespace: { type: 'string' },
  'root-namespace': { type: 'string' },
  selector: { type: 'string', multiple: true },
  'target-ref': { type: 'string', multiple: true },
  'mesh-wide': { type: 'boolean' },
  phase: { type: 'string' },
  priority: { type: 'string' },
  'fail-strategy': { type: 'string' },
  'plugin-config': { type: 'string' },
  'image-pull-policy': { type: 'string' },
  'resource-name': { type: 'string' },
  oci: { type: 'boolean' },
  source: { type: 'string' },
  config: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

const USAGE = `usage: wasm-mirror wasmplugin <name[:tag]> (--mirror-url URL | --local-dir DIR) [options]

Prints an extensions.istio.io/v1alpha1 WasmPlugin for one mirrored module, with spec.sha256 set to
the module's hash. Apply it with: ... | kubectl apply -f -

Where the proxy reads the module:
  --mirror-url URL        url: URL/modules/sha256/<hex>.wasm. The proxy's istio-agent downloads it
                          and checks it against spec.sha256 before Envoy loads it.
  --local-dir DIR         url: file://DIR/modules/sha256/<hex>.wasm, the node directory the agent
                          keeps, at the absolute path where the proxy container mounts it.
                          Istio does not check sha256 for file:// URLs: it hands Envoy the path and
                          Envoy loads whatever file is there. The wasm-mirror agent checked the
                          bytes against the signed manifest before writing them; nothing checks
                          them after that. For two independent checks, use --mirror-url without
                          --local-dir: spec.sha256 comes from the verified manifest, and Istio
                          checks the bytes it downloads against it.
  --oci                   with --mirror-url: url: oci://<mirror host>/<source id>/<repository>:<tag>,
                          the mirror's read-only registry API, which serves only what the signed
                          manifest lists. spec.sha256 is then what Istio compares for oci://: the
                          image manifest's digest (for an index, that of the linux/amd64 or
                          platform-less entry Istio loads), read from the mirror and checked
                          against the verified manifest. Formats Istio's oci:// fetcher does not
                          load are refused. For a plain-http mirror, list its host in
                          istio-agent's WASM_INSECURE_REGISTRIES.
  --source ID             with --oci: the config source the module came from (default: the one
                          source in --config FILE or ./wasm-mirror.config.yaml whose registry is
                          the module's host)

Which manifest lists the module:
  --from-manifest FILE    the agent's DIR/manifest.json (a payload the agent verified), or a signed
                          envelope, which is verified with --trusted-keys (and --mirror-name)
  --trusted-keys FILE     the mirror's public keys; without --from-manifest, URL/manifests/latest.json
                          is fetched and verified with them and --mirror-name
  --mirror-name NAME      the mirror name the manifest must carry

Where it applies (Istio takes a selector or target refs, never both):
  --namespace NS          metadata.namespace (default: the root namespace)
  --root-namespace NS     Istio's root namespace, meshConfig.rootNamespace (default ${DEFAULT_ROOT_NAMESPACE})
  --selector KEY=VALUE    spec.selector.matchLabels; repeat for more labels, all of which must match.
                          In the root namespace it selects workloads in every namespace.
  --target-ref KIND/NAME  spec.targetRefs; repeat for more (at most ${MAX_TARGET_REFS}). KIND is one of
                            Gateway        group gateway.networking.k8s.io, same namespace
                            GatewayClass   group gateway.networking.k8s.io, root namespace only
                            Service        core group "", same namespace; waypoints only
                            ServiceEntry   group networking.istio.io, same namespace
  --mesh-wide             confirms a plugin in the root namespace with neither --selector nor
                          --target-ref: it loads into every proxy in the mesh, so it is refused
                          without this flag. Outside the root namespace, a plugin with neither
                          applies to every workload of its own namespace.

How it runs:
  --phase PHASE           spec.phase: AUTHN (before Istio's authentication), AUTHZ (before its
                          authorization), STATS (before its stats) or UNSPECIFIED_PHASE (Istio's
                          default: last, just before the router)
  --priority N            spec.priority, a 32-bit integer; within a phase, higher runs first
                          (Istio's default 0). Write a negative one as --priority=-10.
  --fail-strategy S       spec.failStrategy: FAIL_CLOSE (Istio's default: if the module cannot be
                          fetched or fails fatally, requests fail) or FAIL_OPEN (the plugin is
                          skipped instead; not for authentication or authorization plugins)
  --plugin-config FILE    spec.pluginConfig: a file holding one YAML 1.2 object, or one JSON object
                          in a *.json file (read as strict JSON), which Envoy passes to the plugin
  --image-pull-policy P   spec.imagePullPolicy for --mirror-url: IfNotPresent (the default: the url
                          names the bytes by hash, so a cached copy is never stale) or Always.
                          Istio ignores it for file:// URLs, so --local-dir refuses it.
  --resource-name NAME    metadata.name (default: the module's last path segment)
  -h, --help              this text
`;

type Placement = { selector?: { matchLabels: Record<string, string> }; targetRefs?: TargetRef[] };
type TargetRef = { group: string; kind: string; name: string };

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, OPTIONS);
  if (values.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1)
    throw new WasmMirrorError('USAGE', `give exactly one module name[:tag]\n\n${USAGE}`);
  const mirrorUrl = values['mirror-url']?.replace(/\/+$/, '');
  const localDir = values['local-dir'] === undefined ? undefined : checkLocalDir(values['local-dir']);
  if (mirrorUrl === undefined && localDir === undefined) {
    throw new WasmMirrorError('USAGE', `--mirror-url or --local-dir is required\n\n${USAGE}`);
  }
  if (mirrorUrl !== undefined && !/^https?:\/\/[^/]/i.test(mirrorUrl)) {
    throw new WasmMirrorError('USAGE', '--mirror-url must be an http(s) URL');
  }
  const oci = values.oci === true;
  if (oci) checkOciFlags(mirrorUrl, localDir);
  else if (values.source !== undefined) throw new WasmMirrorError('USAGE', '--source needs --oci');
  const rootNamespace = dnsLabel(values['root-namespace'] ?? DEFAULT_ROOT_NAMESPACE, '--root-namespace');
  const namespace = dnsLabel(values.namespace ?? rootNamespace, '--namespace');
  const placement = placementOf(values, namespace, rootNamespace);
  const phase = oneOf(values.phase, PHASES, '--phase');
  const failStrategy = oneOf(values['fail-strategy'], FAIL_STRATEGIES, '--fail-strategy');
  const pullPolicy = oneOf(values['image-pull-policy'], PULL_POLICIES, '--image-pull-policy');
  if (pullPolicy !== undefined && localDir !== undefined) {
    throw new WasmMirrorError(
      'USAGE',
      '--image-pull-policy has no effect on file:// URLs (--local-dir): Istio applies it only to modules it downloads',
    );
  }
  const priority = values.priority === undefined ? undefined : int32(values.priority);
  const resourceNameFlag =
    values['resource-name'] === undefined
      ? undefined
      : dnsSubdomain(values['resource-name'], '--resource-name');
  // Read before any network access, so a bad file fails fast.
  const pluginConfig =
    values['plugin-config'] === undefined ? undefined : await readPluginConfig(values['plugin-config']);
  const { name, tag } = splitReference(positionals[0]!);

  let payload: ManifestPayload;
  if (values['from-manifest'] !== undefined) {
    payload = await loadLocalManifest(values['from-manifest'], values['trusted-keys'], values['mirror-name']);
  } else {
    if (mirrorUrl === undefined || !values['trusted-keys'] || !values['mirror-name']) {
      throw new WasmMirrorError(
        'USAGE',
        "without --from-manifest, --mirror-url, --trusted-keys and --mirror-name are needed to verify the mirror's manifest",
      );
    }
    // Only the module's name is looked up: with v2 that is one bin, whatever the mirror's size.
    payload = (
      await readMirrorListing(mirrorUrl, {
        trustedKeys: loadTrustedKeys(await readKeys(values['trusted-keys'])),
        mirrorName: values['mirror-name'],
        names: [name],
      })
    ).payload;
  }

  const m = pickModule(payload, name, tag);
  const file = `modules/sha256/${m.sha256}.wasm`;
  const remoteUrl = mirrorUrl === undefined ? undefined : `${mirrorUrl}/${file}`;
  const pinned = oci
    ? await ociPin(m, mirrorUrl!, values.source ?? (await sourceFromConfig(m.name, values.config)))
    : undefined;
  // Istio strips "file://" and hands Envoy the rest verbatim, so the path is not percent-encoded.
  const url = pinned?.url ?? (localDir !== undefined ? `file://${posix.join(localDir, file)}` : remoteUrl!);
  const doc = {
    apiVersion: 'extensions.istio.io/v1alpha1',
    kind: 'WasmPlugin',
    metadata: {
      name: resourceNameFlag ?? resourceName(m.name),
      namespace,
      annotations: {
        'wasm-mirror/module': `${m.name}:${m.tag}`,
        'wasm-mirror/oci-digest': m.ociDigest,
        'wasm-mirror/manifest-version': String(payload.version),
      },
    },
    spec: {
      ...placement,
      url,
      sha256: pinned?.sha256 ?? m.sha256,
      // The URL names the content by hash, so a cached copy can never be stale.
      ...(localDir === undefined ? { imagePullPolicy: pullPolicy ?? 'IfNotPresent' } : {}),
      ...(phase !== undefined ? { phase } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...(failStrategy !== undefined ? { failStrategy } : {}),
      ...(pluginConfig !== undefined ? { pluginConfig } : {}),
    },
  };
  // YAML 1.1 quoting: kubectl reads YAML 1.1, where an unquoted `yes` or `on` is a boolean.
  io.stdout.write(stringify(doc, { lineWidth: 0, version: '1.1', aliasDuplicateObjects: false }));
  if (localDir !== undefined) io.stderr.write(localDirNote(url, remoteUrl));
  if (oci && mirrorUrl!.toLowerCase().startsWith('http:')) {
    io.stderr.write(
      `note: Istio pulls oci:// over HTTPS; for this plain-http mirror, add ${new URL(mirrorUrl!).host} to istio-agent's WASM_INSECURE_REGISTRIES.\n`,
    );
  }
  return 0;
}

function checkOciFlags(mirrorUrl: string | undefined, localDir: string | undefined): void {
  if (mirrorUrl === undefined || localDir !== undefined) {
    throw new WasmMirrorError('USAGE', '--oci takes --mirror-url (the mirror serving /v2/), not --local-dir');
  }
  if (new URL(mirrorUrl).pathname !== '/') {
    throw new WasmMirrorError(
      'USAGE',
      `--oci needs a --mirror-url without a path: an oci:// reference names a host, and the registry API lives at its /v2/ (got ${mirrorUrl})`,
    );
  }
}

/** `--source` when not given: the one configured source pulling from the module's registry. */
async function sourceFromConfig(moduleName: string, configFile: string | undefined): Promise<string> {
  const host = moduleName.slice(0, moduleName.indexOf('/'));
  const file = configFile ?? 'wasm-mirror.config.yaml';
  let ids: string[];
  try {
    ids = (await loadConfigFile(file)).sources.filter((s) => s.registry === host).map((s) => s.id);
  } catch (err) {
    if (configFile !== undefined) throw err;
    ids = [];
  }
  if (ids.length === 1) return ids[0]!;
  throw new WasmMirrorError(
    'USAGE',
    ids.length === 0
      ? `--oci needs --source ID: the id of the mirror's config source for ${host} (no source for it in ${file})`
      : `--oci needs --source ID: several sources pull from ${host} (${ids.join(', ')})`,
  );
}

/**
 * The oci:// reference and the digest Istio compares for it. Istio checks the digest of the image
 * it loads (go-containerregistry's remote.Image: for an index, its linux/amd64 or platform-less
 * entry), so the reference is resolved on the mirror's own registry API by the puller, the way it
 * resolves an upstream one, and the top manifest must be the digest the verified manifest lists.
 */
async function ociPin(
  m: ManifestModule,
  mirrorUrl: string,
  sourceId: string,
): Promise<{ url: string; sha256: string }> {
  if (!istioLoadsFormat(m.format)) {
    throw new WasmMirrorError(
      'UNSUPPORTED_FORMAT',
      `${m.name}:${m.tag} is packaged as ${m.format}, which Istio's oci:// fetcher does not load; drop --oci: the https URL serves the module itself`,
    );
  }
  const repository = m.name.slice(m.name.indexOf('/') + 1);
  const ociName = `${sourceId}/${repository}`;
  if (!isValidOciName(ociName)) {
    throw new WasmMirrorError(
      'USAGE',
      `--source ${JSON.stringify(sourceId)} does not make a repository name`,
    );
  }
  const mirror = new URL(mirrorUrl);
  let resolved: ResolvedWasm;
  try {
    resolved = await new OciWasmPuller().resolve({
      registry: mirror.host,
      repository: ociName,
      reference: m.tag === '' ? m.ociDigest : m.tag,
      insecure: mirror.protocol === 'http:',
    });
  } catch (err) {
    // An unknown name or reference: most often the wrong source id.
    if (!isWasmMirrorError(err, 'MANIFEST_UNKNOWN') && !isWasmMirrorError(err, 'NAME_UNKNOWN')) throw err;
    throw new WasmMirrorError(
      'MANIFEST_UNKNOWN',
      `${err.message} (is --source the right source id, and does the mirror keep this entry for its registry API?)`,
      { cause: err },
    );
  }
  if (resolved.ociDigest !== m.ociDigest) {
    throw new WasmMirrorError(
      'DIGEST_MISMATCH',
      `the mirror's registry API answers ${ociName} with ${resolved.ociDigest}; the signed manifest says ${m.ociDigest}`,
    );
  }
  const ref = m.tag === '' ? `@${m.ociDigest}` : `:${m.tag}`;
  return {
    url: `oci://${mirror.host}/${ociName}${ref}`,
    sha256: resolved.imageDigest.slice('sha256:'.length),
  };
}

function localDirNote(fileUrl: string, remoteUrl: string | undefined): string {
  const alternative = remoteUrl ?? '<mirror>/modules/sha256/<hex>.wasm (give --mirror-url)';
  return `note: Istio does not check spec.sha256 for file:// URLs; Envoy loads ${fileUrl.slice('file://'.length)} as it finds it.
  checked: the wasm-mirror agent verified the signed manifest and this module's size and sha256 before renaming it into place.
  not checked: any change to the file after that, by whoever can write to that directory on the node.
  For a second, independent check by Istio itself, drop --local-dir: the url is then ${alternative},
  which Istio downloads and checks against spec.sha256.
`;
}

/** The absolute path as the proxy sees it, in characters Istio and Envoy take literally. */
function checkLocalDir(dir: string): string {
  if (!posix.isAbsolute(dir)) {
    throw new WasmMirrorError(
      'USAGE',
      `--local-dir must be the absolute path where the proxy container mounts the agent's directory (such as /var/lib/wasm-mirror), not ${JSON.stringify(dir)}`,
    );
  }
  if (!/^[A-Za-z0-9._~/+=,@-]+$/.test(dir)) {
    throw new WasmMirrorError(
      'USAGE',
      `--local-dir ${JSON.stringify(dir)} has characters a file:// URL would have to escape, and Istio passes the path on unescaped; mount the directory at a plain path`,
    );
  }
  return posix.normalize(dir).replace(/(.)\/+$/, '$1');
}

function placementOf(
  values: { selector?: string[]; 'target-ref'?: string[]; 'mesh-wide'?: boolean },
  namespace: string,
  rootNamespace: string,
): Placement {
  const selectors = values.selector ?? [];
  const refs = values['target-ref'] ?? [];
  if (selectors.length > 0 && refs.length > 0) {
    throw new WasmMirrorError(
      'USAGE',
      '--selector and --target-ref cannot be combined: a WasmPlugin has spec.selector or spec.targetRefs, not both',
    );
  }
  if (values['mesh-wide']) {
    if (selectors.length > 0 || refs.length > 0) {
      throw new WasmMirrorError(
        'USAGE',
        `--mesh-wide contradicts --${selectors.length > 0 ? 'selector' : 'target-ref'}, which narrows the plugin; drop one`,
      );
    }
    if (namespace !== rootNamespace) {
      throw new WasmMirrorError(
        'USAGE',
        `--mesh-wide needs the root namespace ${rootNamespace}; in namespace ${namespace} the plugin applies to that namespace only (drop --mesh-wide for that)`,
      );
    }
    return {};
  }
  if (selectors.length > 0) return { selector: { matchLabels: matchLabels(selectors) } };
  if (refs.length > 0) return { targetRefs: targetRefs(refs, namespace, rootNamespace) };
  if (namespace === rootNamespace) {
    throw new WasmMirrorError(
      'USAGE',
      `a WasmPlugin in the root namespace ${rootNamespace} with no --selector and no --target-ref loads into every proxy in the mesh. ` +
        'Narrow it with --selector KEY=VALUE (such as istio=ingressgateway) or --target-ref KIND/NAME, ' +
        'limit it to one namespace with --namespace NS, or give --mesh-wide if every proxy should load it',
    );
  }
  return {};
}

const LABEL_NAME = /^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Kubernetes label rules: [prefix/]name with name at most 63, value empty or at most 63. */
function matchLabels(pairs: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const bad = (why: string) =>
      new WasmMirrorError('USAGE', `--selector ${JSON.stringify(pair)}: ${why} (expected KEY=VALUE)`);
    if (eq <= 0) throw bad('no key');
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const slash = key.lastIndexOf('/');
    const prefix = slash === -1 ? undefined : key.slice(0, slash);
    const name = key.slice(slash + 1);
    if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix)))
      throw bad(`key prefix ${JSON.stringify(prefix)} is not a DNS subdomain`);
    if (name.length > 63 || !LABEL_NAME.test(name))
      throw bad('the key is not a Kubernetes label name (letters, digits, - _ ., at most 63)');
    if (value !== '' && (value.length > 63 || !LABEL_NAME.test(value)))
      throw bad('the value is not a Kubernetes label value (letters, digits, - _ ., at most 63)');
    if (Object.hasOwn(labels, key)) throw bad(`label ${key} is given twice`);
    labels[key] = value;
  }
  return labels;
}

function targetRefs(refs: string[], namespace: string, rootNamespace: string): TargetRef[] {
  if (refs.length > MAX_TARGET_REFS)
    throw new WasmMirrorError(
      'USAGE',
      `at most ${MAX_TARGET_REFS} --target-ref (Istio's limit), got ${refs.length}`,
    );
  const seen = new Set<string>();
  return refs.map((ref) => {
    const slash = ref.indexOf('/');
    const kind = slash === -1 ? ref : ref.slice(0, slash);
    const name = slash === -1 ? '' : ref.slice(slash + 1);
    const known = TARGET_KINDS[kind];
    if (!Object.hasOwn(TARGET_KINDS, kind) || known === undefined) {
      throw new WasmMirrorError(
        'USAGE',
        `--target-ref ${JSON.stringify(ref)}: KIND must be one of ${Object.keys(TARGET_KINDS).join(', ')} (expected KIND/NAME)`,
      );
    }
    if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) {
      throw new WasmMirrorError(
        'USAGE',
        `--target-ref ${JSON.stringify(ref)}: NAME must be a Kubernetes object name (expected KIND/NAME)`,
      );
    }
    if (known.rootNamespaceOnly && namespace !== rootNamespace) {
      throw new WasmMirrorError(
        'USAGE',
        `--target-ref ${kind}/${name}: Istio attaches to a ${kind} only from the root namespace ${rootNamespace}, not from ${namespace}`,
      );
    }
    if (seen.has(`${kind}/${name}`))
      throw new WasmMirrorError('USAGE', `--target-ref ${kind}/${name} is given twice`);
    seen.add(`${kind}/${name}`);
    return { group: known.group, kind, name };
  });
}

function oneOf<T extends string>(
  value: string | undefined,
  allowed: readonly T[],
  flag: string,
): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value))
    throw new WasmMirrorError(
      'USAGE',
      `${flag} must be one of ${allowed.join(', ')}, not ${JSON.stringify(value)}`,
    );
  return value as T;
}

function int32(text: string): number {
  const n = Number(text);
  if (!/^[-+]?\d+$/.test(text) || n < -(2 ** 31) || n > 2 ** 31 - 1) {
    throw new WasmMirrorError(
      'USAGE',
      `--priority must be an integer from ${-(2 ** 31)} to ${2 ** 31 - 1}, not ${JSON.stringify(text)}`,
    );
  }
  return n === 0 ? 0 : n; // no -0 in the output
}

function dnsLabel(value: string, flag: string): string {
  if (value.length > 63 || !DNS_LABEL.test(value))
    throw new WasmMirrorError('USAGE', `${flag} ${JSON.stringify(value)} is not a Kubernetes namespace name`);
  return value;
}

function dnsSubdomain(value: string, flag: string): string {
  if (value.length > 253 || !DNS_SUBDOMAIN.test(value))
    throw new WasmMirrorError('USAGE', `${flag} ${JSON.stringify(value)} is not a Kubernetes object name`);
  return value;
}

/**
 * One YAML 1.2 or JSON object. Everything refused is named with the file, line and column, since
 * the same mistake would otherwise surface later as a rejected resource or a plugin that
 * misreads its configuration.
 */
async function readPluginConfig(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new WasmMirrorError('USAGE', `--plugin-config: cannot read ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const refusal = (offset: number, why: string) => {
    const before = text.slice(0, offset).split('\n');
    const where = `${file}:${before.length}:${before.at(-1)!.length + 1}`;
    return new WasmMirrorError('CONFIG_INVALID', `--plugin-config ${where}: ${why}`);
  };
  if (/\.json$/i.test(file)) {
    // YAML would take `{"a": 1,}` or a repeated key that a JSON file means as a mistake.
    const bom = text.startsWith('\uFEFF') ? 1 : 0;
    try {
      parseStrictJson(text.slice(bom));
    } catch (err) {
      if (err instanceof StrictJsonError) throw refusal(err.position + bom, err.reason);
      throw err;
    }
  }
  const doc = parseDocument(text);
  const first = doc.errors[0];
  if (first !== undefined) {
    const why =
      first.code === 'MULTIPLE_DOCS'
        ? 'holds more than one YAML document; give one object'
        : first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
    throw refusal(first.pos[0], why);
  }
  const contents = doc.contents;
  if (contents === null) throw refusal(0, 'is empty; spec.pluginConfig must be an object');
  if (!isMap(contents)) {
    const value = isScalar(contents) ? contents.value : undefined;
    const kind = isSeq(contents) ? 'a list' : value === null ? 'null' : `a ${typeof value}`;
    throw refusal(
      contents.range[0],
      `holds ${kind}; spec.pluginConfig must be an object (KEY: VALUE lines or {...})`,
    );
  }
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key))
        throw refusal(pair.key.range![0], 'a key is a list or map; JSON keys are strings');
    },
    Scalar(_, node) {
      const v = node.value;
      if (typeof v === 'number' && !Number.isFinite(v))
        throw refusal(node.range![0], `${node.source ?? String(v)} has no JSON form`);
      if (typeof v === 'number' && Number.isInteger(v) && !Number.isSafeInteger(v))
        throw refusal(node.range![0], `${node.source ?? String(v)} is too large to keep exactly; quote it`);
    },
  });
  return doc.toJS() as Record<string, unknown>;
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
