import type { App } from 'aws-cdk-lib';
import { loadDeployment } from './deployment.ts';
import { PipelineStack } from './pipeline-stack.ts';
import { StorageStack } from './storage-stack.ts';

export interface WasmMirrorStacks {
  storage: StorageStack;
  pipeline: PipelineStack;
}

/** Stack names carry the mirror name so one account can host several mirrors. */
export function buildApp(app: App): WasmMirrorStacks {
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
    env,
    description: `Wasm Mirror ${name}: webhook API, queues, functions, alarms`,
  });
  return { storage, pipeline };
}
