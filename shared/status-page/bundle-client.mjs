// The status page's script bundle, one definition for both builds of it: bin/build.mjs bakes it
// into the CLI bundle, and the server running from the TypeScript sources bundles it on first use.
// Plain JavaScript because bin/build.mjs runs on Node without a TypeScript loader.
import { fileURLToPath } from 'node:url';

/** @param {typeof import('esbuild')} esbuild @returns {Promise<string>} */
export async function bundleStatusPageScript(esbuild) {
  const result = await esbuild.build({
    entryPoints: [fileURLToPath(new URL('./client/main.ts', import.meta.url))],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    // Browsers of the last few years; WebCrypto ECDSA and private class fields are older still.
    target: ['chrome109', 'firefox115', 'safari16'],
    minify: true,
    legalComments: 'none',
    logLevel: 'warning',
    write: false,
  });
  return result.outputFiles[0].text.trimEnd();
}
