/**
 * The CDK app: `cdk deploy -c config=wasm-mirror.config.yaml`. Two stacks per mirror, storage
 * (retained) and pipeline (stateless), with cdk-nag's AWS Solutions checks on every synth. A
 * refused input (no config, a bad key, a source Lambda cannot reach) prints one line naming it.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { statusPageHtml } from '../../shared/status-page/page.ts';
import { buildApp } from '../lib/app.ts';
import { DeploymentError } from '../lib/deployment.ts';

const app = new App();
// Built before the stacks: bundling the page's script is asynchronous, constructs are not.
const html = await statusPageHtml();
try {
  buildApp(app, { statusPageHtml: html });
} catch (err) {
  if (!(err instanceof DeploymentError)) throw err;
  process.stderr.write(`wasm-mirror: ${err.message}\n`);
  process.exit(1);
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
