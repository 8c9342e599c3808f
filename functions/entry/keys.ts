import { loadFunctionEnv } from '../config.ts';
import { createLazyKeysResourceHandler } from '../handlers/keys.ts';
import { createKeysRuntime } from '../roles/keys.ts';

// Built inside the handler: CloudFormation must get an answer even when the runtime cannot start.
export const handler = createLazyKeysResourceHandler(() => createKeysRuntime(loadFunctionEnv('keys')));
