/**
 * Docker Hub repository webhooks: `{"push_data":{"tag":…},"repository":{"repo_name":"ns/repo"}}`.
 * Docker Hub offers no signature and no custom header, so the secret is the token in the URL
 * path. No digest is sent: the job carries the tag and the mirror resolves it.
 */
import {
  asObject,
  checkBodySize,
  checkPathToken,
  DeliveryBuilder,
  malformed,
  obj,
  parseJsonStrict,
  str,
} from './common.ts';
import type { ParsedDelivery, SourceConfig, WebhookParser, WebhookRequest } from './types.ts';

export const parseDockerHub: WebhookParser = (
  source: SourceConfig,
  secret: string,
  request: WebhookRequest,
): ParsedDelivery => {
  checkBodySize(request.body);
  checkPathToken(request, secret);
  const body = asObject(parseJsonStrict(request.body), 'Docker Hub payload');
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
};
