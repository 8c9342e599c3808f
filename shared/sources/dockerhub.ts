import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseDockerHub: WebhookParser = () => {
  throw malformed('not implemented');
};
