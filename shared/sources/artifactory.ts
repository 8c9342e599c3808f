import { malformed } from './common.ts';
import type { WebhookParser } from './types.ts';

export const parseArtifactory: WebhookParser = () => {
  throw malformed('not implemented');
};
