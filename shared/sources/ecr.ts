import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseEcr: WebhookParser = () => {
  throw malformed('not implemented');
};
export const parseEcrTrusted = parseEcr;
export const parseEcrEvent = parseEcr;
