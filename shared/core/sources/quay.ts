/**
 * Quay "Push to repository" notifications: `{"repository":"ns/repo","docker_url":"quay.io/ns/repo",
 * "updated_tags":[…]}`. Quay cannot sign or add headers, so the secret is the token in the URL
 * path (`/hooks/<sourceId>/<token>`). No digest is sent: jobs carry the tag and the mirror
 * resolves it.
 */
import { DeliveryBuilder, hostOf } from './delivery.ts';
import { asObject, str } from './json.ts';
import type { WebhookSender } from './types.ts';

/** Tags per delivery at most; a push naming more is truncated and says so. */
const MAX_TAGS = 100;

export const quaySender: WebhookSender = {
  auth: { kind: 'path-token' },
  parse({ source, request, body: json }) {
    const body = asObject(json, 'Quay payload');
    const out = new DeliveryBuilder(source, request);
    const tags = body.updated_tags;
    if (!Array.isArray(tags)) {
      // Build, vulnerability and mirror notifications share the endpoint but announce no push.
      out.ignore('unsupported-event', str(body, 'build_id') ? 'build' : 'no updated_tags');
      return out.build();
    }
    const dockerUrl = str(body, 'docker_url');
    const host = dockerUrl
      ? hostOf(dockerUrl.includes('://') ? dockerUrl : `https://${dockerUrl}`)
      : undefined;
    if (tags.length > MAX_TAGS) out.ignore('too-many-tags', `${tags.length - MAX_TAGS} not mirrored`);
    if (tags.length === 0) out.ignore('empty', 'no tags');
    for (const tag of tags.slice(0, MAX_TAGS)) {
      out.add({ repository: str(body, 'repository'), tag: typeof tag === 'string' ? tag : undefined, host });
    }
    return out.build();
  },
};
