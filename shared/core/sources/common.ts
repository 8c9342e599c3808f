/**
 * Rules every webhook parser shares: body cap, strict JSON, constant-time secret checks, OCI
 * grammar, allow-list globs, the registry-host rule, and building jobs from candidate references.
 * Parsers only know their sender's payload shape; everything that decides safety lives here.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { type MirrorJob, SHA256_DIGEST } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import { isValidRepository, isValidTag } from '../oci/reference.ts';
import {
  decodeUtf8Strict,
  type JsonObject,
  type JsonValue,
  parseStrictJson,
  StrictJsonError,
} from '../strict-json.ts';
import type { IgnoredEvent, ParsedDelivery, SourceConfig, WebhookRequest } from './types.ts';

export type { JsonObject, JsonValue } from '../strict-json.ts';

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const MAX_JSON_DEPTH = 32;

// ---------------------------------------------------------------------------------------------
// Errors

export function unauthenticated(message = 'webhook authentication failed'): WasmMirrorError {
  return new WasmMirrorError('WEBHOOK_UNAUTHENTICATED', message);
}

export function malformed(message: string): WasmMirrorError {
  return new WasmMirrorError('WEBHOOK_MALFORMED', message);
}

// ---------------------------------------------------------------------------------------------
// Request helpers

/** Header value by case-insensitive name; the contract lowercases names but callers vary. */
export function header(request: WebhookRequest, name: string): string | undefined {
  const wanted = name.toLowerCase();
  const direct = request.headers[wanted];
  if (typeof direct === 'string') return direct;
  for (const [key, value] of Object.entries(request.headers)) {
    if (key.toLowerCase() === wanted && typeof value === 'string') return value;
  }
  return undefined;
}

export function checkBodySize(body: Uint8Array, maxBytes = DEFAULT_MAX_BODY_BYTES): void {
  if (body.byteLength > maxBytes) {
    throw new WasmMirrorError('WEBHOOK_TOO_LARGE', `webhook body exceeds ${maxBytes} bytes`);
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Raw body bytes from an API Gateway event. Binary and some text payloads arrive base64-encoded;
 * HMACs must be checked over the decoded bytes, so decoding is strict (no silent skipping).
 */
export function fromApiGatewayBody(body: string | null | undefined, isBase64Encoded: boolean): Uint8Array {
  if (body === null || body === undefined) return new Uint8Array(0);
  if (!isBase64Encoded) return new Uint8Array(Buffer.from(body, 'utf8'));
  if (!BASE64.test(body)) throw malformed('body is not valid base64');
  return new Uint8Array(Buffer.from(body, 'base64'));
}

export function receivedAtIso(request: WebhookRequest): string {
  const time = request.receivedAt;
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw malformed('request has no receive time');
  return time.toISOString();
}

// ---------------------------------------------------------------------------------------------
// Strict JSON (see ../strict-json.ts), with errors mapped to WEBHOOK_MALFORMED. Objects have a
// null prototype so a missing field never reads an inherited member. Bodies carry free text we
// never read (descriptions, commit messages), so a leading BOM or a lone surrogate there is no
// reason to drop a push; the fields that decide a job are checked against the OCI grammar.

export function decodeUtf8(body: Uint8Array): string {
  try {
    return decodeUtf8Strict(body, { stripBom: true });
  } catch {
    throw malformed('body is not valid UTF-8');
  }
}

export function parseJsonStrict(body: Uint8Array | string, maxDepth = MAX_JSON_DEPTH): JsonValue {
  const text = typeof body === 'string' ? body : decodeUtf8(body);
  try {
    return parseStrictJson(text, { maxDepth, nullPrototype: true, allowLoneSurrogates: true });
  } catch (err) {
    if (err instanceof StrictJsonError) {
      throw malformed(`invalid JSON at offset ${err.position}: ${err.reason}`);
    }
    throw err;
  }
}

/** Checks size and parses; the usual first step of a JSON sender. */
export function readJsonBody(request: WebhookRequest, maxBytes = DEFAULT_MAX_BODY_BYTES): JsonValue {
  checkBodySize(request.body, maxBytes);
  return parseJsonStrict(request.body);
}

// Typed accessors: payload fields are untrusted, so every read checks the type.

export function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function asObject(value: unknown, what: string): JsonObject {
  if (!isObject(value)) throw malformed(`${what} is not an object`);
  return value;
}

export function asArray(value: unknown, what: string): JsonValue[] {
  if (!Array.isArray(value)) throw malformed(`${what} is not an array`);
  return value;
}

export function str(obj: JsonObject | undefined, key: string): string | undefined {
  const v = obj?.[key];
  return typeof v === 'string' ? v : undefined;
}

export function obj(parent: JsonObject | undefined, key: string): JsonObject | undefined {
  const v = parent?.[key];
  return isObject(v) ? v : undefined;
}

// ---------------------------------------------------------------------------------------------
// Secrets. Both sides are hashed before timingSafeEqual so neither a length difference nor the
// position of the first differing byte shows in the timing.

export function secretsEqual(presented: string | undefined, expected: string): boolean {
  const a = createHash('sha256')
    .update(presented ?? '', 'utf8')
    .digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  // A source with no configured secret authenticates nobody.
  return timingSafeEqual(a, b) && presented !== undefined && expected.length > 0;
}

export function hmacSha256Hex(secret: string, body: Uint8Array): string {
  return createHmac('sha256', secret).update(body).digest('hex');
}

/** Constant-time check of a hex HMAC-SHA256 of the raw body bytes. */
export function hmacMatches(secret: string, body: Uint8Array, presentedHex: string | undefined): boolean {
  if (secret.length === 0 || presentedHex === undefined) return false;
  return secretsEqual(presentedHex.toLowerCase(), hmacSha256Hex(secret, body));
}

export function requireSecret(secret: string): void {
  // Misconfiguration must fail closed, not accept an empty header.
  if (secret.length === 0) throw unauthenticated('no webhook secret configured for this source');
}

/**
 * `Authorization: Bearer <secret>` (scheme case-insensitive). With `allowBare`, the header may also
 * carry the secret verbatim (Harbor sends its configured "auth header" value as is).
 */
export function checkAuthorization(
  request: WebhookRequest,
  secret: string,
  options: { headerName?: string; allowBare?: boolean } = {},
): void {
  requireSecret(secret);
  const value = header(request, options.headerName ?? 'authorization');
  if (value === undefined) throw unauthenticated('missing webhook credentials');
  const bearer = /^bearer\s+(.+)$/i.exec(value.trim());
  let ok = bearer !== null && secretsEqual(bearer[1], secret);
  if (options.allowBare) ok = secretsEqual(value.trim(), secret) || ok;
  if (!ok) throw unauthenticated();
}

/** `Authorization: Basic base64(user:secret)`: the password is the secret, the user is not checked. */
export function basicPasswordMatches(request: WebhookRequest, secret: string): boolean {
  const value = header(request, 'authorization');
  const m = value === undefined ? null : /^basic\s+([A-Za-z0-9+/=]+)$/i.exec(value.trim());
  if (!m?.[1] || !BASE64.test(m[1])) return false;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon >= 0 && secretsEqual(decoded.slice(colon + 1), secret);
}

/**
 * A static secret in a header: `Bearer <secret>` or the secret verbatim, in `headerName`
 * (default `authorization`); with `allowBasic`, also `Authorization: Basic` whose password is it.
 */
export function checkStaticHeader(
  request: WebhookRequest,
  secret: string,
  options: { headerName?: string | undefined; allowBasic?: boolean } = {},
): void {
  requireSecret(secret);
  const name = (options.headerName ?? 'authorization').toLowerCase();
  const value = header(request, name)?.trim();
  const bearer = value === undefined ? null : /^bearer\s+(.+)$/i.exec(value);
  let ok = secretsEqual(value, secret);
  ok = (bearer !== null && secretsEqual(bearer[1], secret)) || ok;
  if (options.allowBasic && name === 'authorization') ok = basicPasswordMatches(request, secret) || ok;
  if (!ok) throw unauthenticated(value === undefined ? 'missing webhook credentials' : undefined);
}

export function checkPathToken(request: WebhookRequest, secret: string): void {
  requireSecret(secret);
  if (request.pathToken === undefined) throw unauthenticated('missing webhook token');
  if (!secretsEqual(request.pathToken, secret)) throw unauthenticated();
}

// ---------------------------------------------------------------------------------------------
// OCI grammar (distribution-spec): names and tags as the OCI client checks them; only sha256
// digests, since the mirror and the manifest address content by sha256.

export { isValidRepository, isValidTag };

export function isValidDigest(digest: string): boolean {
  return SHA256_DIGEST.test(digest);
}

// ---------------------------------------------------------------------------------------------
// Allow-list globs: `*` matches within one path segment, `**` across segments.

const globCache = new Map<string, RegExp>();

export function globToRegExp(glob: string): RegExp {
  const cached = globCache.get(glob);
  if (cached) return cached;
  let re = '';
  for (let i = 0; i < glob.length; ) {
    if (glob.startsWith('**', i)) {
      const before = i === 0 || glob[i - 1] === '/';
      const after = i + 2 === glob.length || glob[i + 2] === '/';
      if (before && after && i + 2 < glob.length) {
        // `a/**/b` also matches `a/b`; a leading `**/x` also matches `x`.
        re += '(?:.*/)?';
        i += 3;
      } else {
        re += '.*';
        i += 2;
      }
    } else if (glob[i] === '*') {
      re += '[^/]*';
      i++;
    } else {
      re += glob[i]!.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
      i++;
    }
  }
  const compiled = new RegExp(`^${re}$`);
  if (globCache.size < 1000) globCache.set(glob, compiled);
  return compiled;
}

/** An empty allow-list allows nothing: a source must name what it mirrors. */
export function repositoryAllowed(source: SourceConfig, repository: string): boolean {
  return source.repositories.some((glob) => globToRegExp(glob).test(repository));
}

// ---------------------------------------------------------------------------------------------
// Registry host. The job's registry is always source.registry; a payload host only decides
// whether the event is about this registry at all.

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]', '::1']);
const DOCKER_HUB = new Set([
  'docker.io',
  'index.docker.io',
  'registry-1.docker.io',
  'registry.hub.docker.com',
]);

function splitHost(hostPort: string): { host: string; port: string } {
  const h = hostPort.trim().toLowerCase().replace(/\.$/, '');
  const v6 = /^(\[[^\]]*\])(?::(\d+))?$/.exec(h);
  if (v6) return { host: v6[1]!, port: v6[2] ?? '' };
  const colon = h.lastIndexOf(':');
  if (colon > 0 && h.indexOf(':') === colon && /^\d+$/.test(h.slice(colon + 1))) {
    return { host: h.slice(0, colon), port: h.slice(colon + 1) };
  }
  return { host: h, port: '' };
}

/**
 * True when a payload's host names the configured registry: equal ignoring case, the default
 * https port, the loopback aliases of one port (a local registry reports `localhost:5000` or
 * `127.0.0.1:5000` depending on how the client addressed it) and the Docker Hub aliases.
 */
export function sameRegistry(configured: string, payloadHost: string): boolean {
  const a = splitHost(configured);
  const b = splitHost(payloadHost);
  const portA = a.port === '443' ? '' : a.port;
  const portB = b.port === '443' ? '' : b.port;
  if (portA !== portB) return false;
  if (a.host === b.host) return true;
  if (LOOPBACK.has(a.host) && LOOPBACK.has(b.host)) return true;
  return DOCKER_HUB.has(a.host) && DOCKER_HUB.has(b.host);
}

/** Host of a URL or of a `host/repo[:tag|@digest]` reference; undefined when none is recognisable. */
export function hostOf(urlOrReference: string): string | undefined {
  const s = urlOrReference.trim();
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    try {
      return new URL(s).host || undefined;
    } catch {
      return undefined;
    }
  }
  const slash = s.indexOf('/');
  if (slash <= 0) return undefined;
  const first = s.slice(0, slash);
  // Docker's rule: the first component is a host only if it has a dot, a port or is localhost.
  return first.includes('.') || first.includes(':') || first === 'localhost' ? first : undefined;
}

// ---------------------------------------------------------------------------------------------
// Building the delivery.

export interface Candidate {
  repository: string | undefined;
  tag?: string | undefined;
  digest?: string | undefined;
  /** Registry host the payload names, when it names one. */
  host?: string | undefined;
  /** Per-event id, carried into the job for dedupe and logs. */
  eventId?: string | undefined;
  /**
   * Ignore the push (reason `untagged`) when it names no tag. Registries that report every
   * manifest PUT announce the platform manifests of an index (and referrers such as signatures)
   * as untagged pushes just before the tagged one; mirroring those would list tag-less entries.
   */
  requireTag?: boolean;
}

/** Collects candidates and ignored events, applying the shared rules to each candidate. */
export class DeliveryBuilder {
  readonly jobs: MirrorJob[] = [];
  readonly ignored: IgnoredEvent[] = [];
  private readonly seen = new Set<string>();
  private readonly receivedAt: string;

  constructor(
    private readonly source: SourceConfig,
    request: WebhookRequest,
  ) {
    this.receivedAt = receivedAtIso(request);
  }

  ignore(reason: string, detail?: string): void {
    this.ignored.push(detail === undefined ? { reason } : { reason, detail: detail.slice(0, 200) });
  }

  /** Returns true when the candidate became a job (or duplicated one already built). */
  add(candidate: Candidate): boolean {
    const { repository, host } = candidate;
    // Harbor puts the digest in `tag` for a digest-only push.
    let tag = candidate.tag === '' ? undefined : candidate.tag;
    const digest = candidate.digest === '' ? undefined : candidate.digest;
    if (tag?.startsWith('sha256:') && (digest === undefined || tag === digest)) {
      if (!isValidDigest(tag)) return this.reject('invalid-reference', 'tag is not a valid digest');
      if (digest === undefined) return this.add({ ...candidate, tag: undefined, digest: tag });
      tag = undefined;
    }
    if (host !== undefined && host !== '' && !sameRegistry(this.source.registry, host)) {
      return this.reject('other-registry', host);
    }
    if (repository === undefined || !isValidRepository(repository)) {
      return this.reject('invalid-reference', 'repository name');
    }
    if (tag !== undefined && !isValidTag(tag)) return this.reject('invalid-reference', 'tag');
    if (digest !== undefined && !isValidDigest(digest)) return this.reject('invalid-reference', 'digest');
    if (tag === undefined && digest === undefined)
      return this.reject('invalid-reference', 'no tag or digest');
    if (tag === undefined && candidate.requireTag) return this.reject('untagged', digest ?? '');
    if (!repositoryAllowed(this.source, repository)) return this.reject('not-allowed-repository', repository);
    const key = `${repository}\n${tag ?? ''}\n${digest ?? ''}`;
    if (this.seen.has(key)) return true;
    this.seen.add(key);
    const job: MirrorJob = {
      sourceId: this.source.id,
      registry: this.source.registry,
      repository,
      receivedAt: this.receivedAt,
    };
    if (tag !== undefined) job.tag = tag;
    if (digest !== undefined) job.digest = digest;
    if (candidate.eventId !== undefined && candidate.eventId !== '')
      job.deliveryId = candidate.eventId.slice(0, 200);
    this.jobs.push(job);
    return true;
  }

  private reject(reason: string, detail: string): false {
    this.ignore(reason, detail);
    return false;
  }

  build(deliveryId?: string): ParsedDelivery {
    const out: ParsedDelivery = { jobs: this.jobs, ignored: this.ignored };
    if (deliveryId !== undefined && deliveryId !== '') {
      out.deliveryId = deliveryId.slice(0, 200);
      for (const job of this.jobs) job.deliveryId ??= out.deliveryId;
    }
    return out;
  }
}

/** Delivery id for a batch of events that each carry their own id. */
export function batchDeliveryId(ids: readonly string[]): string | undefined {
  const present = ids.filter((id) => id !== '');
  if (present.length === 0) return undefined;
  if (present.length === 1) return present[0];
  return `batch-${createHash('sha256').update(present.join('\n')).digest('hex').slice(0, 32)}`;
}

/** A delivery that is acknowledged and does nothing. */
export function ignoredDelivery(reason: string, detail?: string, deliveryId?: string): ParsedDelivery {
  const out: ParsedDelivery = { jobs: [], ignored: [detail === undefined ? { reason } : { reason, detail }] };
  if (deliveryId !== undefined && deliveryId !== '') out.deliveryId = deliveryId.slice(0, 200);
  return out;
}
