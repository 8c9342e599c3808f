#!/usr/bin/env node
// Bundles the CLI into dist/, so `wasm-mirror` starts in tens of milliseconds instead of
// compiling TypeScript at every start, and so the packed package needs no dependencies at all.
// Run by `npm pack` (prepack), and with --if-stale by `npm start` and `npm test`. It is not an
// install script: npm flags those in a package installed from a tarball. Sources edited after
// the build are noticed by bin/wasm-mirror.mjs, which then runs them directly.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { newestSourceMtime } from './sources.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const ifStale = process.argv.includes('--if-stale');
// A package without the bundle cannot run: packing must fail rather than warn.
const packing = process.env.npm_command === 'pack' || process.env.npm_command === 'publish';
if (!existsSync(`${root}/shared/cli/main.ts`)) {
  console.error('bin/build.mjs: no sources here to build (an installed package carries only the bundle)');
  process.exit(packing ? 1 : 0);
}
const stamp = newestSourceMtime(root);
if (ifStale && bundleStamp() >= stamp) process.exit(0);
let esbuild;
try {
  esbuild = await import('esbuild');
} catch {
  if (packing) {
    console.error('esbuild is not installed (run npm ci first); the package needs the CLI bundle');
    process.exit(1);
  }
  console.warn('esbuild is not installed; wasm-mirror will run from the TypeScript sources');
  process.exit(0);
}
mkdirSync(`${root}/dist`, { recursive: true });
// The status page's browser script, baked in so the bundle serves the page without esbuild.
const { bundleStatusPageScript } = await import('../shared/status-page/bundle-client.mjs');
const statusPageScript = await bundleStatusPageScript(esbuild);
const result = await esbuild.build({
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
  define: { __WASM_MIRROR_STATUS_PAGE_SCRIPT__: JSON.stringify(statusPageScript) },
  logLevel: 'warning',
  write: false,
});
// Written beside and renamed into place: a command starting meanwhile reads the old bundle or the
// new one, never half of one.
for (const file of result.outputFiles) {
  const tmp = `${file.path}.${process.pid}.tmp`;
  writeFileSync(tmp, file.contents);
  renameSync(tmp, file.path);
}
writeFileSync(`${root}/dist/wasm-mirror.stamp.json`, JSON.stringify({ newestSourceMtime: stamp }));

function bundleStamp() {
  try {
    if (!existsSync(`${root}/dist/wasm-mirror.mjs`)) return -1;
    return JSON.parse(readFileSync(`${root}/dist/wasm-mirror.stamp.json`, 'utf8')).newestSourceMtime;
  } catch {
    return -1;
  }
}
