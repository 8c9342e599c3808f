/**
 * Azure Container Registry webhooks: one event per request (not an envelope), shaped like a
 * distribution event (`action`, `target`, `request.host`). `ping` is the "Ping" button. ACR adds
 * only the custom headers the user configured: the secret travels in one of them (`webhookHeader`,
 * default `authorization`), as `Bearer <secret>` or verbatim.
 */
import { DeliveryBuilder, ignoredDelivery } from './delivery.ts';
import { asObject, obj, str } from './json.ts';
import { isManifestMediaType } from './media-types.ts';
import type { WebhookSender } from './types.ts';

const IGNORED_ACTIONS: Record<string, string> = {
  ping: 'ping',
  delete: 'delete',
  chart_push: 'chart-push',
  chart_delete: 'delete',
  quarantine: 'quarantine',
};

export const acrSender: WebhookSender = {
  auth: { kind: 'static-header', bare: true, sourceHeader: true },
  parse({ source, request, body }) {
    const event = asObject(body, 'ACR event');
    const id = str(event, 'id');
    const action = str(event, 'action') ?? '';
    if (action !== 'push')
      return ignoredDelivery(IGNORED_ACTIONS[action] ?? 'unsupported-action', action, id);
    const target = obj(event, 'target');
    const out = new DeliveryBuilder(source, request);
    const mediaType = str(target, 'mediaType');
    if (mediaType !== undefined && !isManifestMediaType(mediaType)) {
      out.ignore('unsupported-media-type', mediaType);
      return out.build(id);
    }
    out.add({
      repository: str(target, 'repository'),
      tag: str(target, 'tag'),
      digest: str(target, 'digest'),
      host: str(obj(event, 'request'), 'host'),
      eventId: id,
      requireTag: true,
    });
    return out.build(id);
  },
};
