/**
 * The parser of each source type, and the dispatcher entry points call.
 */
import { WasmMirrorError } from '../errors.ts';
import { parseAcr } from './acr.ts';
import { parseArtifactory } from './artifactory.ts';
import { parseCloudEvents } from './cloudevents.ts';
import { parseDistribution } from './distribution.ts';
import { parseDockerHub } from './dockerhub.ts';
import { parseEcr } from './ecr.ts';
import { parseGitHub } from './github.ts';
import { parseHarbor } from './harbor.ts';
import { parseQuay } from './quay.ts';
import type { ParsedDelivery, SourceConfig, SourceType, WebhookParser, WebhookRequest } from './types.ts';

export const parsers: Readonly<Record<SourceType, WebhookParser>> = Object.freeze({
  distribution: parseDistribution,
  harbor: parseHarbor,
  github: parseGitHub,
  quay: parseQuay,
  dockerhub: parseDockerHub,
  artifactory: parseArtifactory,
  acr: parseAcr,
  cloudevents: parseCloudEvents,
  ecr: parseEcr,
});

/**
 * Parses one delivery with the parser of the source's type. Throws only WasmMirrorError with a
 * WEBHOOK_* code: UNAUTHENTICATED (401), TOO_LARGE (413), MALFORMED (400), UNKNOWN_SOURCE.
 */
export function parseWebhook(source: SourceConfig, secret: string, request: WebhookRequest): ParsedDelivery {
  const parser = Object.hasOwn(parsers, source.type) ? parsers[source.type] : undefined;
  if (parser === undefined) {
    throw new WasmMirrorError('WEBHOOK_UNKNOWN_SOURCE', `no webhook parser for source type '${source.type}'`);
  }
  try {
    return parser(source, secret, request);
  } catch (err) {
    if (err instanceof WasmMirrorError && err.code.startsWith('WEBHOOK_')) throw err;
    // A parser defect must still answer as a rejected delivery, never a 500 loop with the sender.
    throw new WasmMirrorError('WEBHOOK_MALFORMED', 'webhook payload could not be processed', { cause: err });
  }
}
