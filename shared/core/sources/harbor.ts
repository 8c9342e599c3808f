/**
 * Harbor project webhooks, "Default" payload format (`{"type":"PUSH_ARTIFACT","event_data":…}`);
 * the "CloudEvents" format (`harbor.artifact.pushed`) is accepted here too and by the cloudevents
 * source. Harbor sends its configured auth header value verbatim, so both `Bearer <secret>` and
 * the bare secret are accepted.
 */
import { type Candidate, DeliveryBuilder, hostOf } from './delivery.ts';
import { asObject, isObject, type JsonObject, malformed, obj, str } from './json.ts';
import type { WebhookSender } from './types.ts';

const IGNORED_TYPES: Record<string, string> = {
  PULL_ARTIFACT: 'pull',
  DELETE_ARTIFACT: 'delete',
  'harbor.artifact.pulled': 'pull',
  'harbor.artifact.deleted': 'delete',
};

export function isHarborPush(type: string): boolean {
  return type === 'PUSH_ARTIFACT' || type === 'harbor.artifact.pushed';
}

export function harborIgnoreReason(type: string): string {
  return IGNORED_TYPES[type] ?? 'unsupported-event';
}

/**
 * One candidate per pushed resource. A digest pushed without a tag comes with the digest in
 * `tag` (or no tag); the builder turns that into a digest-only job.
 */
export function harborCandidates(data: JsonObject | undefined, eventId: string | undefined): Candidate[] {
  const repo = obj(data, 'repository');
  const namespace = str(repo, 'namespace');
  const name = str(repo, 'name');
  const repository = str(repo, 'repo_full_name') ?? (namespace && name ? `${namespace}/${name}` : undefined);
  const resources = data?.resources;
  if (!Array.isArray(resources)) return [];
  return resources.filter(isObject).map((resource) => {
    return {
      repository,
      tag: str(resource, 'tag'),
      digest: str(resource, 'digest'),
      host: resourceHost(str(resource, 'resource_url')),
      eventId,
    };
  });
}

/** `resource_url` is always `<hostname>/<project>/<repo>[:tag|@digest]`, even for a dotless hostname. */
function resourceHost(url: string | undefined): string {
  if (!url) return '';
  if (url.includes('://')) return hostOf(url) ?? '';
  const slash = url.indexOf('/');
  return slash > 0 ? url.slice(0, slash) : '';
}

export const harborSender: WebhookSender = {
  auth: { kind: 'static-header', bare: true },
  parse({ source, request, body: json }) {
    const body = asObject(json, 'Harbor payload');
    const type = str(body, 'type');
    if (type === undefined) throw malformed('Harbor payload has no type');
    const cloudEvent = str(body, 'specversion') !== undefined;
    const data = cloudEvent ? obj(body, 'data') : obj(body, 'event_data');
    // The default format has no event id; CloudEvents carry one.
    const eventId = cloudEvent ? str(body, 'id') : undefined;
    const out = new DeliveryBuilder(source, request);
    if (!isHarborPush(type)) {
      out.ignore(harborIgnoreReason(type), type);
    } else {
      const candidates = harborCandidates(data, eventId);
      if (candidates.length === 0) out.ignore('malformed-event', 'push without resources');
      for (const c of candidates) out.add(c);
    }
    return out.build(eventId);
  },
};
