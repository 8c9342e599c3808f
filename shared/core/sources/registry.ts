/**
 * The sender of each source type, and the one entry point that reads a delivery with it: the
 * steps every sender shares run here, so a sender's parser only knows its payload shape.
 */
import { WasmMirrorError } from '../errors.ts';
import { acrSender } from './acr.ts';
import { artifactorySender } from './artifactory.ts';
import { authenticate } from './auth.ts';
import { cloudEventsSender } from './cloudevents.ts';
import { distributionSender } from './distribution.ts';
import { dockerHubSender } from './dockerhub.ts';
import { ecrSender } from './ecr.ts';
import { gitHubSender } from './github.ts';
import { harborSender } from './harbor.ts';
import { checkBodySize, parseJsonStrict } from './json.ts';
import { quaySender } from './quay.ts';
import type { ParsedDelivery, SourceConfig, SourceType, WebhookRequest, WebhookSender } from './types.ts';

export const senders: Readonly<Record<SourceType, WebhookSender>> = Object.freeze({
  distribution: distributionSender,
  harbor: harborSender,
  github: gitHubSender,
  quay: quaySender,
  dockerhub: dockerHubSender,
  artifactory: artifactorySender,
  acr: acrSender,
  cloudevents: cloudEventsSender,
  ecr: ecrSender,
});

/**
 * Reads one delivery with the sender of the source's type. Throws only WasmMirrorError with a
 * WEBHOOK_* code: UNAUTHENTICATED (401), TOO_LARGE (413), MALFORMED (400), UNKNOWN_SOURCE.
 */
export function parseWebhook(source: SourceConfig, secret: string, request: WebhookRequest): ParsedDelivery {
  const sender = Object.hasOwn(senders, source.type) ? senders[source.type] : undefined;
  if (sender === undefined) {
    throw new WasmMirrorError('WEBHOOK_UNKNOWN_SOURCE', `no webhook parser for source type '${source.type}'`);
  }
  try {
    // The cap comes before anything reads the body, and authentication before the JSON parse:
    // an HMAC covers the raw bytes, and a stranger's payload is never read.
    checkBodySize(request.body);
    authenticate(sender.auth, source, secret, request);
    const empty = request.body.byteLength === 0 && sender.acceptsEmptyBody === true;
    const body = empty ? undefined : parseJsonStrict(request.body);
    return sender.parse({ source, request, body });
  } catch (err) {
    if (err instanceof WasmMirrorError && err.code.startsWith('WEBHOOK_')) throw err;
    // A parser defect must still answer as a rejected delivery, never a 500 loop with the sender.
    throw new WasmMirrorError('WEBHOOK_MALFORMED', 'webhook payload could not be processed', { cause: err });
  }
}
