/**
 * Turning what a payload names into a delivery: every candidate reference goes through the same
 * rules (the registry-host rule, the OCI grammar, the allow-list) before it becomes a job.
 */
import { createHash } from 'node:crypto';
import { type MirrorJob, SHA256_DIGEST } from '../domain.ts';
import { matchesAny } from '../glob.ts';
import { isValidRepository, isValidTag } from '../oci/reference.ts';
import { malformed } from './json.ts';
import type { IgnoredEvent, ParsedDelivery, SourceConfig, WebhookRequest } from './types.ts';

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

function receivedAtIso(request: WebhookRequest): string {
  const time = request.receivedAt;
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw malformed('request has no receive time');
  return time.toISOString();
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
      if (!SHA256_DIGEST.test(tag)) return this.reject('invalid-reference', 'tag is not a valid digest');
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
    // Only sha256: the mirror and the manifest address content by sha256.
    if (digest !== undefined && !SHA256_DIGEST.test(digest))
      return this.reject('invalid-reference', 'digest');
    if (tag === undefined && digest === undefined)
      return this.reject('invalid-reference', 'no tag or digest');
    if (tag === undefined && candidate.requireTag) return this.reject('untagged', digest ?? '');
    // An empty allow-list allows nothing: a source must name what it mirrors.
    if (!matchesAny(this.source.repositories, repository)) {
      return this.reject('not-allowed-repository', repository);
    }
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
