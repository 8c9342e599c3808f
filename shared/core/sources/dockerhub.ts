/**
 * Docker Hub repository webhooks: `{"push_data":{"tag":…},"repository":{"repo_name":"ns/repo"}}`.
 * Docker Hub offers no signature and no custom header, so the secret is the token in the URL
 * path. No digest is sent: the job carries the tag and the mirror resolves it.
 */
import { DeliveryBuilder } from './delivery.ts';
import { asObject, malformed, obj, str } from './json.ts';
import type { WebhookSender } from './types.ts';

export const dockerHubSender: WebhookSender = {
  auth: { kind: 'path-token' },
  parse({ source, request, body: json }) {
    const body = asObject(json, 'Docker Hub payload');
    const pushData = obj(body, 'push_data');
    const repo = obj(body, 'repository');
    if (pushData === undefined || repo === undefined) throw malformed('not a Docker Hub push payload');
    const out = new DeliveryBuilder(source, request);
    let repository = str(repo, 'repo_name');
    // Official images are named without their implicit `library/` namespace.
    if (repository !== undefined && !repository.includes('/')) repository = `library/${repository}`;
    // Docker Hub payloads name no registry host; the source's registry is Docker Hub by config.
    out.add({ repository, tag: str(pushData, 'tag') });
    return out.build();
  },
};
