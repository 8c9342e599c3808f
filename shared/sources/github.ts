import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseGitHub: WebhookParser = () => {
  throw malformed('not implemented');
};
