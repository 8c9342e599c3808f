/**
 * The sender of each source type, and the one entry point that reads a delivery with it: the
 * steps every sender shares run here, so a sender's parser only knows its payload shape.
 */
import { WasmMirrorError } from '../errors.ts';
import { acrSender } from './acr.ts';
import { artifactorySender } from './artifactory.ts';
import { authenticate, secretsEqual, unauthenticated } from './auth.ts';
import { cloudEventsSender } from './cloudevents.ts';
import { header } from './delivery.ts';
import { distributionSender } from './distribution.ts';
import { dockerHubSender } from './dockerhub.ts';
import { ecrSender } from './ecr.ts';
import { gitHubSender } from './github.ts';
import { harborSender } from './harbor.ts';
import { checkBodySize, DEFAULT_MAX_BODY_BYTES, parseJsonStrict } from './json.ts';
import { quaySender } from './quay.ts';
import type {
  DeliveryAdmission,
  ParsedDelivery,
  SourceConfig,
  SourceType,
  WebhookRequest,
  WebhookRequestHead,
  WebhookSender,
} from './types.ts';

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
  const sender = senderOf(source);
  try {
    // The cap comes before anything reads the body, and authentication before the JSON parse:
    // an HMAC covers the raw bytes, and a stranger's payload is never read.
    checkBodySize(request.body, sender.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
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

/**
 * Checks what a delivery's head can prove before an entry point reads its body: a static
 * header, Basic auth or a path token in full; for a body HMAC, that the signature header is
 * there and well formed. A stranger is refused without a byte of their body being read.
 * Throws WEBHOOK_UNAUTHENTICATED or WEBHOOK_UNKNOWN_SOURCE.
 */
export function admitWebhook(
  source: SourceConfig,
  secret: string,
  head: WebhookRequestHead,
): DeliveryAdmission {
  const sender = senderOf(source);
  const maxBodyBytes = sender.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const auth = sender.auth;
  if (auth.kind !== 'body-hmac') {
    authenticate(auth, source, secret, { ...head, body: new Uint8Array(0) });
    return { maxBodyBytes, authenticated: true };
  }
  if (secret.length === 0) throw unauthenticated('no webhook secret configured for this source');
  const value = header({ ...head, body: new Uint8Array(0) }, auth.header)?.trim();
  if (value === undefined) throw unauthenticated(`missing ${auth.header}`);
  if (auth.orSecret === true && secretsEqual(value, secret)) return { maxBodyBytes, authenticated: true };
  if (!auth.signature.test(value)) throw unauthenticated(`malformed ${auth.header}`);
  return { maxBodyBytes, authenticated: false };
}

function senderOf(source: SourceConfig): WebhookSender {
  const sender = Object.hasOwn(senders, source.type) ? senders[source.type] : undefined;
  if (sender === undefined) {
    throw new WasmMirrorError('WEBHOOK_UNKNOWN_SOURCE', `no webhook parser for source type '${source.type}'`);
  }
  return sender;
}
