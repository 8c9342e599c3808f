import { loadFunctionEnv } from '../config.ts';
import { createMirrorQueueHandler } from '../handlers/mirror.ts';
import { createMirrorRuntime } from '../roles/mirror.ts';

export const handler = createMirrorQueueHandler(await createMirrorRuntime(loadFunctionEnv('mirror')));
