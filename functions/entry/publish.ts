import { loadFunctionEnv } from '../config.ts';
import { createPublishQueueHandler } from '../handlers/publish.ts';
import { createPublishRuntime } from '../roles/publish.ts';

export const handler = createPublishQueueHandler(await createPublishRuntime(loadFunctionEnv('publish')));
