import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseAcr: WebhookParser = () => {
  throw malformed('not implemented');
};
