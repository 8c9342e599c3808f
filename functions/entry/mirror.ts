import { loadFunctionEnv } from '../config.ts';
import { createMirrorQueueHandler } from '../handlers/mirror.ts';
import { createAwsRuntime } from '../runtime.ts';

export const handler = createMirrorQueueHandler(await createAwsRuntime(loadFunctionEnv('mirror')));
