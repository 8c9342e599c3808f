/**
 * Amazon ECR "ECR Image Action" events from EventBridge. In AWS they reach the mirror through
 * SQS, a channel IAM already authenticates: the AWS adapter calls `parseEcrTrusted`, which checks
 * no secret. Over HTTP (the embedded runtime, tests) the `ecr` sender demands the static header like
 * any other sender.
 */
import { DeliveryBuilder, ignoredDelivery } from './delivery.ts';
import { asObject, checkBodySize, malformed, obj, parseJsonStrict, str } from './json.ts';
import type {
  AuthenticatedDelivery,
  ParsedDelivery,
  SourceConfig,
  WebhookRequest,
  WebhookSender,
} from './types.ts';

export const ecrSender: WebhookSender = {
  auth: { kind: 'static-header', bare: true, sourceHeader: true },
  parse: parseEcrEvent,
};

/**
 * For events that arrived over an IAM-authenticated channel only (SQS fed by an EventBridge
 * rule): no secret is checked. Never wire this to an HTTP endpoint.
 */
export function parseEcrTrusted(
  source: SourceConfig,
  event: { body: Uint8Array | string; receivedAt: Date },
): ParsedDelivery {
  const body = typeof event.body === 'string' ? new TextEncoder().encode(event.body) : event.body;
  const request: WebhookRequest = { headers: {}, body, receivedAt: event.receivedAt };
  checkBodySize(request.body);
  return parseEcrEvent({ source, request, body: parseJsonStrict(request.body) });
}

function parseEcrEvent({ source, request, body }: AuthenticatedDelivery): ParsedDelivery {
  const event = asObject(body, 'EventBridge event');
  const id = str(event, 'id');
  const detailType = str(event, 'detail-type');
  if (detailType === undefined || str(event, 'source') === undefined)
    throw malformed('not an EventBridge event');
  if (str(event, 'source') !== 'aws.ecr' || detailType !== 'ECR Image Action') {
    return ignoredDelivery('unsupported-event', detailType, id);
  }
  const detail = obj(event, 'detail');
  const action = str(detail, 'action-type') ?? '';
  if (action !== 'PUSH')
    return ignoredDelivery(action === 'DELETE' ? 'delete' : 'unsupported-action', action, id);
  const result = str(detail, 'result') ?? '';
  if (result !== 'SUCCESS') return ignoredDelivery('failed', result, id);
  const out = new DeliveryBuilder(source, request);
  out.add({
    repository: str(detail, 'repository-name'),
    tag: str(detail, 'image-tag'),
    digest: str(detail, 'image-digest'),
    host: ecrHost(str(event, 'account'), str(event, 'region'), source.registry),
    eventId: id,
    requireTag: true,
  });
  return out.build(id);
}

/**
 * The private registry host of an account and region, when the event names both. Events name
 * the standard endpoint; a source configured with the FIPS endpoint of the same registry matches.
 */
export function ecrHost(
  account: string | undefined,
  region: string | undefined,
  configured?: string,
): string | undefined {
  if (!account || !region || !/^\d{12}$/.test(account) || !/^[a-z0-9-]+$/.test(region)) return undefined;
  const host = `${account}.dkr.ecr.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`;
  return configured !== undefined && configured === host.replace('.dkr.ecr.', '.dkr.ecr-fips.')
    ? configured
    : host;
}
