/**
 * JFrog Artifactory webhooks, `docker` domain, `pushed` event. `X-JFrog-Event-Auth` carries the
 * configured secret, or (with "use secret for payload signing") an HMAC-SHA256 of the raw body.
 * The pull path is the repository-path method: `<registry>/<repo_key>/<image_name>:<tag>`.
 */
import { DeliveryBuilder, hostOf } from './delivery.ts';
import { asObject, malformed, obj, str } from './json.ts';
import type { WebhookSender } from './types.ts';

export const artifactorySender: WebhookSender = {
  auth: {
    kind: 'body-hmac',
    header: 'x-jfrog-event-auth',
    signature: /^(?:sha256=)?([0-9a-f]{64})$/i,
    orSecret: true,
  },
  parse({ source, request, body: json }) {
    const body = asObject(json, 'Artifactory payload');
    const domain = str(body, 'domain');
    const eventType = str(body, 'event_type');
    if (domain === undefined || eventType === undefined)
      throw malformed('Artifactory payload has no domain/event_type');
    const out = new DeliveryBuilder(source, request);
    if (domain !== 'docker') {
      out.ignore('unsupported-event', domain);
      return out.build();
    }
    if (eventType !== 'pushed') {
      out.ignore(eventType === 'deleted' ? 'delete' : 'unsupported-event', eventType);
      return out.build();
    }
    const data = obj(body, 'data');
    const repoKey = str(data, 'repo_key');
    const imageName = str(data, 'image_name');
    // data.sha256 is the checksum of the stored manifest file, i.e. the manifest digest.
    const sha256 = str(data, 'sha256');
    const origin = str(body, 'jpd_origin');
    out.add({
      repository: repoKey && imageName ? `${repoKey}/${imageName}` : undefined,
      tag: str(data, 'tag'),
      digest: sha256 ? `sha256:${sha256}` : undefined,
      host: origin ? (hostOf(origin) ?? '') : '',
    });
    return out.build();
  },
};
