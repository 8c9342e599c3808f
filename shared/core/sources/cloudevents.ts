/**
 * CloudEvents 1.0 over HTTP: binary mode (attributes in `ce-*` headers, the body is `data`),
 * structured mode (`application/cloudevents+json`) and batches (`application/cloudevents-batch+json`).
 * Event types understood: zot's `zotregistry.image.updated` and Harbor's `harbor.artifact.pushed`.
 * Proof of origin: a static header (`webhookHeader`, default `authorization`) or Basic auth.
 */
import { DeliveryBuilder, header } from './delivery.ts';
import { harborCandidates, harborIgnoreReason, isHarborPush } from './harbor.ts';
import {
  asArray,
  asObject,
  isObject,
  type JsonObject,
  type JsonValue,
  malformed,
  obj,
  parseJsonStrict,
  str,
} from './json.ts';
import { isManifestMediaType } from './media-types.ts';
import type { WebhookRequest, WebhookSender } from './types.ts';

interface CloudEvent {
  id: string;
  source: string;
  type: string;
  data: JsonValue | undefined;
}

const ZOT_IGNORED: Record<string, string> = {
  'zotregistry.image.deleted': 'delete',
  'zotregistry.image.lint_failed': 'lint-failed',
  'zotregistry.repository.created': 'repository-created',
};

export const cloudEventsSender: WebhookSender = {
  auth: { kind: 'static-header', bare: true, basic: true, sourceHeader: true },
  // Binary mode: the body is the event's data, and an event may have none.
  acceptsEmptyBody: true,
  parse({ source, request, body }) {
    const events = readEvents(request, body);
    const out = new DeliveryBuilder(source, request);
    for (const event of events) {
      const eventId = `${event.source} ${event.id}`;
      if (event.type === 'zotregistry.image.updated') {
        const data = isObject(event.data) ? event.data : undefined;
        const mediaType = str(data, 'mediaType');
        if (mediaType !== undefined && mediaType !== '' && !isManifestMediaType(mediaType)) {
          out.ignore('unsupported-media-type', mediaType);
          continue;
        }
        out.add({
          repository: str(data, 'name'),
          tag: str(data, 'reference'),
          digest: str(data, 'digest'),
          eventId,
          requireTag: true,
        });
      } else if (isHarborPush(event.type)) {
        const candidates = harborCandidates(isObject(event.data) ? event.data : undefined, eventId);
        if (candidates.length === 0) out.ignore('malformed-event', 'push without resources');
        for (const c of candidates) out.add(c);
      } else if (event.type.startsWith('harbor.')) {
        out.ignore(harborIgnoreReason(event.type), event.type);
      } else {
        out.ignore(ZOT_IGNORED[event.type] ?? 'unsupported-event', event.type);
      }
    }
    const only = events.length === 1 ? events[0] : undefined;
    return out.build(only ? `${only.source} ${only.id}` : undefined);
  },
};

function mediaTypeOf(request: WebhookRequest): string {
  return (header(request, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase();
}

function readEvents(request: WebhookRequest, body: JsonValue | undefined): CloudEvent[] {
  const contentType = mediaTypeOf(request);
  if (contentType === 'application/cloudevents-batch+json') {
    return asArray(eventBody(body), 'CloudEvents batch').map((e) => structured(asObject(e, 'CloudEvent')));
  }
  if (contentType === 'application/cloudevents+json') {
    return [structured(asObject(eventBody(body), 'CloudEvent'))];
  }
  const specversion = header(request, 'ce-specversion');
  if (specversion !== undefined) {
    if (specversion !== '1.0') throw malformed(`unsupported CloudEvents specversion '${specversion}'`);
    // Binary mode: the body is the event data; only JSON data is meaningful here.
    return [
      {
        id: attribute(header(request, 'ce-id'), 'ce-id'),
        source: attribute(header(request, 'ce-source'), 'ce-source'),
        type: attribute(header(request, 'ce-type'), 'ce-type'),
        data: body,
      },
    ];
  }
  // Some senders post structured events as plain application/json.
  const event = eventBody(body);
  if (isObject(event) && typeof event.specversion === 'string') return [structured(event)];
  throw malformed('not a CloudEvent (no ce-specversion header and no structured content type)');
}

/** Outside binary mode the body is the event itself: an empty one is refused as the JSON it is not. */
function eventBody(body: JsonValue | undefined): JsonValue {
  return body === undefined ? parseJsonStrict('') : body;
}

function structured(event: JsonObject): CloudEvent {
  const specversion = str(event, 'specversion');
  if (specversion !== '1.0') throw malformed(`unsupported CloudEvents specversion '${specversion ?? ''}'`);
  const base64 = str(event, 'data_base64');
  let data: JsonValue | undefined = event.data;
  if (data === undefined && base64 !== undefined) {
    data = parseJsonStrict(new Uint8Array(Buffer.from(base64, 'base64')));
  }
  return {
    id: attribute(str(event, 'id'), 'id'),
    source: attribute(str(event, 'source'), 'source'),
    type: attribute(str(event, 'type'), 'type'),
    data: data ?? obj(event, 'data'),
  };
}

function attribute(value: string | undefined, name: string): string {
  if (value === undefined || value === '') throw malformed(`CloudEvent attribute '${name}' is missing`);
  return value;
}
