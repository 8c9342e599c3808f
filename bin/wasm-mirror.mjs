#!/usr/bin/env node
// Runs the TypeScript CLI directly, so `npx wasm-mirror` works right after `npm ci` with no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../shared/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
