import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App } from 'aws-cdk-lib';
import { buildApp, type WasmMirrorStacks } from '../../infra/lib/app.ts';
import { EXAMPLE_CONFIG } from '../../infra/lib/deployment.ts';

/**
 * The app as `npm run synth` builds it: the example config unless the context names another (pass
 * `config: undefined` for none). Bundling is skipped (`aws:cdk:bundling-stacks: []`) because
 * templates, not bundles, are under test here; `cdk synth` and the bench bundle for real.
 */
export function synthApp(context: Record<string, unknown> = {}): { app: App } & WasmMirrorStacks {
  const app = new App({ context: { 'aws:cdk:bundling-stacks': [], config: EXAMPLE_CONFIG, ...context } });
  return { app, ...buildApp(app) };
}

export function writeConfig(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'infra-config-'));
  const path = join(dir, 'wasm-mirror.config.yaml');
  writeFileSync(path, text);
  return path;
}
