/**
 * The CDK app: `cdk deploy -c config=wasm-mirror.config.yaml`. Two stacks per mirror, storage
 * (retained) and pipeline (stateless), with cdk-nag's AWS Solutions checks on every synth.
 */
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { buildApp } from '../lib/app.ts';

const app = new App();
buildApp(app);
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
