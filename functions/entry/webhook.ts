import { loadFunctionEnv } from '../config.ts';
import { createWebhookHandler } from '../handlers/webhook.ts';
import { createWebhookRuntime } from '../roles/webhook.ts';

export const handler = createWebhookHandler(await createWebhookRuntime(loadFunctionEnv('webhook')));
