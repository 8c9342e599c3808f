import { loadFunctionEnv } from '../config.ts';
import { createLazyKeysResourceHandler } from '../handlers/keys.ts';
import { createAwsRuntime } from '../runtime.ts';

// Built inside the handler: CloudFormation must get an answer even when the runtime cannot start.
export const handler = createLazyKeysResourceHandler(() => createAwsRuntime(loadFunctionEnv('keys')));
