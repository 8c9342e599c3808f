export function bundleStatusPageScript(esbuild: typeof import('esbuild')): Promise<string>;
