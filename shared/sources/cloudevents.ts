import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseCloudEvents: WebhookParser = () => {
  throw malformed('not implemented');
};
