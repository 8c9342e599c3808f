#!/usr/bin/env node
// The `wasm-mirror` command. Runs the bundle `npm ci` built (fast start), or the TypeScript
// sources directly when they changed since (or no bundle exists), so it is never stale.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { newestSourceMtime } from './sources.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));

function bundleIsFresh() {
  try {
    const stamp = JSON.parse(readFileSync(`${root}/dist/wasm-mirror.stamp.json`, 'utf8'));
    return stamp.newestSourceMtime >= newestSourceMtime(root);
  } catch {
    return false;
  }
}

let main;
if (bundleIsFresh()) {
  ({ main } = await import('../dist/wasm-mirror.mjs'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../shared/cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
