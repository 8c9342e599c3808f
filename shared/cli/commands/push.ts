/**
 * `wasm-mirror push <file.wasm> <ref> [--format F] [--plain-http] [--username U --password-stdin] [--json]`:
 * checks a module, packages it the way Istio loads it and pushes it with the project's OCI client.
 */
import { resolve } from 'node:path';
import { toWasmMirrorError, WasmMirrorError } from '../../core/errors.ts';
import type { RepositoryTarget } from '../../core/oci/client.ts';
import { type PushResult, RegistryPusher } from '../../core/oci/push.ts';
import { apiHost, parseReference } from '../../core/oci/reference.ts';
import {
  MAX_PUSH_MODULE_BYTES,
  PACKAGE_FORMATS,
  type PackageFormat,
  PULLED_AS,
  packageModule,
  readModuleFile,
} from '../../core/wasm/package.ts';
import { type CliIo, parseCommandArgs, REGISTRY_LOGIN_OPTIONS, readRegistryLogin } from '../io.ts';

const HELP = `usage: wasm-mirror push <file.wasm> <reference> [options]

Checks a WebAssembly module (the \\0asm magic, its sections, the engine's validation), packages it
the way Istio's oci:// fetcher loads it and pushes it. Prints the manifest digest. The same module
and format always give the same digest.

  <file.wasm>          the module to push (at most ${MAX_PUSH_MODULE_BYTES / (1024 * 1024)} MiB, Istio's cap)
  <reference>          where to push, with a tag: 127.0.0.1:5000/plugins/auth:1.0 (default tag latest)
  --format F           how to package the module:
                         compat         (default) an OCI image whose one tar+gzip layer holds
                                        plugin.wasm; Istio loads it, and so does any image tool
                         wasm-artifact  the solo.io Wasm artifact Istio loads: config
                                        application/vnd.module.wasm.config.v1+json, two layers
                                        (runtime config, then the raw module)
                         cncf-wasm      the CNCF Wasm OCI artifact (wkg, Spin, wasmCloud): config
                                        application/vnd.wasm.config.v0+json, one application/wasm
                                        layer; Istio does not load it, the mirror does
  --plain-http         talk plain http to the registry (local or test registries)
  -u, --username U     registry user name; the password is read from standard input
  --password-stdin     read the password from standard input (needs --username)
  --json               print the result as JSON: the manifest's digest, size and mediaType, the
                       format (named as pull reports it), the reference and the module's sha256
  -h, --help           show this help

Without --username, credentials come from WASM_MIRROR_USERNAME and WASM_MIRROR_PASSWORD when both
are set; otherwise the push is anonymous.
`;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    format: { type: 'string', default: 'compat' },
    'plain-http': { type: 'boolean' },
    ...REGISTRY_LOGIN_OPTIONS,
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help === true) {
    io.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 2) {
    throw new WasmMirrorError('USAGE', `expected a module file and a reference\n\n${HELP}`);
  }
  const format = values.format as PackageFormat;
  if (!PACKAGE_FORMATS.includes(format)) {
    throw new WasmMirrorError(
      'USAGE',
      `unknown --format '${values.format}' (one of ${PACKAGE_FORMATS.join(', ')})`,
    );
  }
  const credentials = await readRegistryLogin(values, io, { fromEnv: true });
  const ref = parseReference(positionals[1]!);
  if (ref.digest !== undefined) {
    throw new WasmMirrorError(
      'USAGE',
      `push to a tag, not a digest: the content decides the digest (got ${positionals[1]})`,
    );
  }
  const tag = ref.tag ?? 'latest';
  const plainHttp = values['plain-http'] === true;
  const target: RepositoryTarget = {
    registry: ref.registry,
    repository: ref.repository,
    insecure: plainHttp,
  };
  const file = resolve(positionals[0]!);
  const module = await readModuleFile(file);
  if (module.kind === 'component' && format !== 'cncf-wasm') {
    io.stderr.write('warning: this is a component; Envoy loads core modules only\n');
  }
  const artifact = packageModule(module, format);
  if (credentials !== undefined) target.credentials = credentials;

  let pushed: PushResult;
  try {
    pushed = await new RegistryPusher().push(target, tag, artifact);
  } catch (err) {
    throw withFix(toWasmMirrorError(err), target);
  }

  const reference = `${ref.registry}/${ref.repository}:${tag}`;
  const pinned = `${ref.registry}/${ref.repository}@${pushed.digest}`;
  const result = {
    reference,
    pinned,
    digest: pushed.digest,
    mediaType: pushed.mediaType,
    size: pushed.size,
    format: PULLED_AS[format],
    module: {
      file,
      sha256: module.sha256,
      size: module.bytes.length,
      kind: module.kind,
      abi: module.abi ?? null,
    },
    blobs: { uploaded: pushed.uploaded, existing: pushed.existing },
  };
  if (values.json === true) {
    io.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    const rows: [string, string][] = [
      ['digest', pushed.digest],
      ['reference', reference],
      ['pinned', pinned],
      ['format', result.format],
      ['mediaType', pushed.mediaType],
      ['size', String(pushed.size)],
      ['sha256', module.sha256],
      ['kind', module.kind],
      ['abi', module.abi ?? '-'],
      ['blobs', `${pushed.uploaded} uploaded, ${pushed.existing} already there`],
    ];
    io.stdout.write(rows.map(([k, v]) => `${`${k}:`.padEnd(11)}${v}\n`).join(''));
  }
  return 0;
}

/** The registry's refusal, with what to change on this command line to get past it. */
function withFix(err: WasmMirrorError, target: RepositoryTarget): WasmMirrorError {
  const host = apiHost(target.registry);
  let fix: string | undefined;
  switch (err.code) {
    case 'INSECURE_NOT_ALLOWED':
      if (!target.insecure) fix = 'if it is a plain-http registry, add --plain-http';
      break;
    case 'UNAUTHORIZED':
      fix =
        target.credentials === undefined
          ? 'pass --username U --password-stdin, or set WASM_MIRROR_USERNAME and WASM_MIRROR_PASSWORD'
          : `check the user name and password, and that this user may push to ${target.repository}`;
      break;
    case 'DENIED':
      fix = `this user may not push to ${target.repository}`;
      break;
    case 'REGISTRY_UNAVAILABLE':
      if (err.message.startsWith('cannot connect')) fix = `check that a registry listens on ${host}`;
      break;
    case 'REGISTRY_PROTOCOL':
      if (target.insecure && /\b400\b/.test(err.message)) fix = `if ${host} serves TLS, drop --plain-http`;
      break;
    default:
      break;
  }
  if (fix === undefined) return err;
  return new WasmMirrorError(err.code, `${err.message}; ${fix}`, { cause: err, retryable: err.retryable });
}
