#!/usr/bin/env node
// The `wasm-mirror` command. Runs the bundle `npm ci` built (fast start), or the TypeScript
// sources directly when they changed since (or no bundle exists), so it is never stale. An
// installed package (`npm pack`, the container image) carries only the bundle.
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { newestSourceMtime } from './sources.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const hasSources = existsSync(`${root}/shared/cli/main.ts`);

function bundleIsFresh() {
  try {
    const stamp = JSON.parse(readFileSync(`${root}/dist/wasm-mirror.stamp.json`, 'utf8'));
    return stamp.newestSourceMtime >= newestSourceMtime(root);
  } catch {
    return false;
  }
}

let main;
if (!hasSources || bundleIsFresh()) {
  ({ main } = await import('../dist/wasm-mirror.mjs'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../shared/cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
