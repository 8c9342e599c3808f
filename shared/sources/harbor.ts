import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseHarbor: WebhookParser = () => {
  throw malformed('not implemented');
};
