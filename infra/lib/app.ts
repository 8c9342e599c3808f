import type { App } from 'aws-cdk-lib';
import { loadDeployment } from './deployment.ts';
import { PipelineStack } from './pipeline-stack.ts';
import { StorageStack } from './storage-stack.ts';

export interface WasmMirrorStacks {
  storage: StorageStack;
  pipeline: PipelineStack;
}

export interface BuildOptions {
  /**
   * The status page document (`await statusPageHtml()`), written as index.html. Built by the
   * caller because building it is asynchronous and stacks are not; without it no page is written.
   */
  readonly statusPageHtml?: string;
}

/** Stack names carry the mirror name so one account can host several mirrors. */
export function buildApp(app: App, options: BuildOptions = {}): WasmMirrorStacks {
  const deployment = loadDeployment(app.node);
  const name = deployment.config.mirror.name;
  const env = { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION };
  const storage = new StorageStack(app, `WasmMirror-${name}-Storage`, {
    deployment,
    env,
    description: `Wasm Mirror ${name}: bucket, signing key, CDN (retained)`,
  });
  const pipeline = new PipelineStack(app, `WasmMirror-${name}-Pipeline`, {
    deployment,
    storage,
    statusPageHtml: options.statusPageHtml,
    env,
    description: `Wasm Mirror ${name}: webhook API, queues, functions, alarms`,
  });
  return { storage, pipeline };
}
