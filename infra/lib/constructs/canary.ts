/**
 * The canary: a scheduled function that reads keys.json and the signed index
 * manifests/v2/index.json (v1's latest.json on a mirror without one) through CloudFront as an
 * agent does, verifies it and publishes the served manifest's age (functions/handlers/canary.ts).
 * PipelineAlarms alarms on that age and on the canary's errors.
 */
import { Duration } from 'aws-cdk-lib';
import { Metric } from 'aws-cdk-lib/aws-cloudwatch';
import { Rule, Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { Construct } from 'constructs';
import { CANARY_ENV, SERVED_MANIFEST_AGE_METRIC } from '../../../functions/handlers/canary.ts';
import type { Deployment } from '../deployment.ts';
import { MirrorFunction } from './mirror-function.ts';

export interface CanaryProps {
  readonly deployment: Deployment;
  /** `https://<distribution domain>`: what agents are configured with. */
  readonly mirrorUrl: string;
}

export class Canary extends Construct {
  /** How often the canary runs. */
  static readonly INTERVAL = Duration.minutes(5);
  readonly function: MirrorFunction;
  private readonly deployment: Deployment;

  constructor(scope: Construct, id: string, props: CanaryProps) {
    super(scope, id);
    const { deployment } = props;
    this.deployment = deployment;
    // No bucket and no AWS API: it sees the mirror only as agents do, over HTTPS.
    this.function = new MirrorFunction(this, 'Function', {
      entry: 'canary',
      description: 'Canary: fetches and verifies the served manifest through CloudFront',
      deployment,
      timeout: Duration.seconds(30),
      memorySize: 256,
      environment: {
        [CANARY_ENV.mirrorUrl]: props.mirrorUrl,
        [CANARY_ENV.mirrorName]: deployment.config.mirror.name,
      },
    });
    // A failed run is what the alarms report; retrying it would only repeat the same check.
    this.function.fn.configureAsyncInvoke({ retryAttempts: 0 });
    new Rule(this, 'Schedule', {
      description: 'Runs the canary against the CloudFront distribution',
      schedule: Schedule.rate(Canary.INTERVAL),
      targets: [new LambdaFunction(this.function.fn, { retryAttempts: 0 })],
    });
  }

  /** Seconds since the manifest agents are served was signed (maximum over `period`). */
  servedManifestAge(period: Duration): Metric {
    return new Metric({
      namespace: this.deployment.metricsNamespace,
      metricName: SERVED_MANIFEST_AGE_METRIC,
      dimensionsMap: { service: 'wasm-mirror', mirror: this.deployment.config.mirror.name },
      statistic: 'Maximum',
      period,
    });
  }
}
