import { loadFunctionEnv } from '../config.ts';
import { createKeysResourceHandler } from '../handlers/keys.ts';
import { createAwsRuntime } from '../runtime.ts';

export const handler = createKeysResourceHandler(await createAwsRuntime(loadFunctionEnv('keys')));
