#!/usr/bin/env node
// Bundles the CLI into dist/ (run by `npm ci` through `prepare`), so `wasm-mirror` starts in
// tens of milliseconds instead of compiling TypeScript at every start. Sources edited after the
// build are noticed by bin/wasm-mirror.mjs, which then runs them directly.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { newestSourceMtime } from './sources.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  console.warn('esbuild is not installed; wasm-mirror will run from the TypeScript sources');
  process.exit(0);
}
const stamp = newestSourceMtime(root);
mkdirSync(`${root}/dist`, { recursive: true });
await esbuild.build({
  entryPoints: [`${root}/shared/cli/main.ts`],
  outfile: `${root}/dist/wasm-mirror.mjs`,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  legalComments: 'none',
  // Bundled CommonJS dependencies call require() for Node built-ins.
  banner: {
    js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
writeFileSync(`${root}/dist/wasm-mirror.stamp.json`, JSON.stringify({ newestSourceMtime: stamp }));
