import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseQuay: WebhookParser = () => {
  throw malformed('not implemented');
};
