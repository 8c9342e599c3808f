import { loadFunctionEnv } from '../config.ts';
import { createPublishQueueHandler } from '../handlers/publish.ts';
import { createAwsRuntime } from '../runtime.ts';

export const handler = createPublishQueueHandler(await createAwsRuntime(loadFunctionEnv('publish')));
