/**
 * CNCF Distribution (registry:2, distribution v3) notifications and GitLab's container registry,
 * which sends the same envelope: `{"events":[…]}` with media type
 * `application/vnd.docker.distribution.events.v1+json` (v2 from distribution v3). The registry's
 * endpoint config sends a static `Authorization: Bearer <secret>` header.
 */
import { batchDeliveryId, DeliveryBuilder, hostOf } from './delivery.ts';
import { asArray, asObject, isObject, malformed, obj, str } from './json.ts';
import { isManifestMediaType } from './media-types.ts';
import type { WebhookSender } from './types.ts';

export const DISTRIBUTION_EVENTS_MEDIA_TYPES = [
  'application/vnd.docker.distribution.events.v1+json',
  'application/vnd.docker.distribution.events.v2+json',
] as const;

const IGNORED_ACTIONS: Record<string, string> = { pull: 'pull', mount: 'mount', delete: 'delete' };

export const distributionSender: WebhookSender = {
  auth: { kind: 'static-header', bare: false },
  parse({ source, request, body }) {
    const envelope = asObject(body, 'notification envelope');
    const events = asArray(envelope.events, 'envelope events');
    const out = new DeliveryBuilder(source, request);
    const ids: string[] = [];
    for (const raw of events) {
      // A registry never sends these; a body carrying them is not an event envelope.
      if (!isObject(raw)) throw malformed('event is not an object');
      const action = str(raw, 'action');
      if (action === undefined) throw malformed('event has no action');
      const target = obj(raw, 'target');
      if (action === 'push' && target === undefined) throw malformed('push event has no target');
      const id = str(raw, 'id') ?? '';
      ids.push(id);
      if (action !== 'push') {
        out.ignore(IGNORED_ACTIONS[action] ?? 'unsupported-action', action);
        continue;
      }
      const mediaType = str(target, 'mediaType');
      if (!isManifestMediaType(mediaType)) {
        // Layer and config blobs (application/octet-stream in older registries) are pushed before
        // the manifest; only the manifest push names a complete artifact.
        out.ignore('blob-push', mediaType ?? 'no media type');
        continue;
      }
      // request.host is the Host the pushing client used; target.url is built from it.
      const requestHost = str(obj(raw, 'request'), 'host');
      const url = str(target, 'url');
      out.add({
        repository: str(target, 'repository'),
        tag: str(target, 'tag'),
        digest: str(target, 'digest'),
        host: requestHost || (url ? (hostOf(url) ?? '') : ''),
        eventId: id,
        requireTag: true,
      });
    }
    if (events.length === 0) out.ignore('empty', 'no events');
    return out.build(batchDeliveryId(ids));
  },
};
