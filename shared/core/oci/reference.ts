/**
 * Image references as users write them (`ghcr.io/acme/filter:1.0`, `…@sha256:…`, `oci://…`,
 * `nginx`), parsed and validated by the distribution reference grammar.
 */
import { SHA256_DIGEST } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';

export interface ImageReference {
  /** host[:port] as written (`docker.io` for Docker Hub names). */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
  /** What to ask the registry for: the digest when given, else the tag (default `latest`). */
  reference: string;
}

export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_API = 'registry-1.docker.io';

// distribution/reference: path components, separators `.`, `_`, `__`, `-+`.
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6_LITERAL = /^\[[a-fA-F0-9:.]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const MAX_NAME = 255;

function invalid(input: string, why: string): WasmMirrorError {
  return new WasmMirrorError('INVALID_REFERENCE', `invalid reference '${input}': ${why}`);
}

/** True for `host`, `host:port`, `[v6]:port` as the grammar allows. */
export function isValidRegistryHost(host: string): boolean {
  const m = /^(.*?)(?::(\d{1,5}))?$/.exec(host);
  if (m === null) return false;
  const [, name = '', port] = m;
  if (port !== undefined && Number(port) > 65535) return false;
  if (IPV6_LITERAL.test(name)) return true;
  return name.length > 0 && name.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

export function isValidRepository(repository: string): boolean {
  return repository.length <= MAX_NAME && repository.split('/').every((c) => PATH_COMPONENT.test(c));
}

export function isValidTag(tag: string): boolean {
  return TAG.test(tag);
}

/** A tag or a `sha256:` digest, as a RegistryTarget's `reference` holds. */
export function assertTagOrDigest(reference: string): void {
  if (reference.includes(':')) {
    if (!SHA256_DIGEST.test(reference)) {
      throw new WasmMirrorError('INVALID_REFERENCE', `unsupported or malformed digest '${reference}'`);
    }
  } else if (!TAG.test(reference)) {
    throw new WasmMirrorError('INVALID_REFERENCE', `invalid tag '${reference}'`);
  }
}

export function parseReference(input: string): ImageReference {
  let rest = input.trim();
  if (rest.startsWith('oci://')) rest = rest.slice('oci://'.length);
  if (rest.length === 0) throw invalid(input, 'empty');
  if (/[\s]/.test(rest)) throw invalid(input, 'contains whitespace');

  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!SHA256_DIGEST.test(digest)) throw invalid(input, `unsupported or malformed digest '${digest}'`);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(input, `invalid tag '${tag}'`);
  }

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  // Like docker: the first component is a host when it looks like one.
  if (
    slash >= 0 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('['))
  ) {
    registry = first;
    repository = rest.slice(slash + 1);
    if (!isValidRegistryHost(registry)) throw invalid(input, `invalid registry host '${registry}'`);
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (!isValidRepository(repository)) throw invalid(input, `invalid repository name '${repository}'`);

  const ref: ImageReference = { registry, repository, reference: digest ?? tag ?? 'latest' };
  if (digest === undefined && tag === undefined) ref.tag = 'latest';
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** The host the HTTP API lives on (Docker Hub's names are served by registry-1.docker.io). */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB || registry === 'index.docker.io' ? DOCKER_HUB_API : registry;
}

export function formatReference(ref: { registry: string; repository: string; reference: string }): string {
  const sep = ref.reference.startsWith('sha256:') ? '@' : ':';
  return `${ref.registry}/${ref.repository}${sep}${ref.reference}`;
}
