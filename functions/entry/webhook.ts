import { loadFunctionEnv } from '../config.ts';
import { createWebhookHandler } from '../handlers/webhook.ts';
import { createAwsRuntime } from '../runtime.ts';

export const handler = createWebhookHandler(await createAwsRuntime(loadFunctionEnv('webhook')));
