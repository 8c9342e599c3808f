/**
 * One CloudWatch dashboard per mirror: deliveries in, mirror outcomes by result, queue ages,
 * the manifest's version and age (as written and as served), and what agents get from
 * CloudFront. Metrics labelled by source or result are drawn with SEARCH, so a new source or
 * error code shows up without a redeploy.
 */
import { Aws, Duration } from 'aws-cdk-lib';
import type { HttpApi } from 'aws-cdk-lib/aws-apigatewayv2';
import {
  Dashboard as CwDashboard,
  GraphWidget,
  type IMetric,
  MathExpression,
  Metric,
} from 'aws-cdk-lib/aws-cloudwatch';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { metricNames } from '../../../shared/core/metrics.ts';
import type { Deployment } from '../deployment.ts';
import type { Canary } from './canary.ts';
import type { MirrorQueues } from './mirror-queues.ts';
import type { WebhookApi } from './webhook-api.ts';

export interface DashboardProps {
  readonly deployment: Deployment;
  readonly queues: MirrorQueues;
  readonly webhook: WebhookApi;
  readonly canary: Canary;
  /** The storage stack's CloudFront distribution. */
  readonly distributionId: string;
}

const PERIOD = Duration.minutes(5);

export class Dashboard extends Construct {
  readonly dashboard: CwDashboard;

  constructor(scope: Construct, id: string, props: DashboardProps) {
    super(scope, id);
    const { deployment, queues, webhook, canary } = props;
    const name = deployment.config.mirror.name;
    const namespace = deployment.metricsNamespace;
    const own = (metricName: string, statistic = 'Maximum') =>
      new Metric({
        namespace,
        metricName,
        dimensionsMap: { service: 'wasm-mirror', mirror: name },
        statistic,
        period: PERIOD,
      });
    // Labels become dimensions beside `service` and `mirror` (functions/adapters/telemetry.ts).
    const byLabel = (metricName: string, labels: string[], label: string) =>
      new MathExpression({
        expression: `SEARCH('{${namespace},${['mirror', 'service', ...labels].sort().join(',')}} MetricName="${metricName}" mirror="${name}"', 'Sum', ${PERIOD.toSeconds()})`,
        label,
        period: PERIOD,
      });

    this.dashboard = new CwDashboard(this, 'Dashboard', {
      // Dashboards are global to the account: the region keeps a second region's apart.
      dashboardName: `WasmMirror-${name.replace(/[^A-Za-z0-9_-]/g, '-')}-${Aws.REGION}`,
      defaultInterval: Duration.days(1),
    });
    this.dashboard.addWidgets(
      graph('Deliveries (webhooks by outcome, API requests)', [
        byLabel(metricNames.webhooks, ['outcome', 'source'], ''),
        apiMetric(webhook.api, 'Count', 'API requests'),
      ]),
      graph('Mirror outcomes by result', [byLabel(metricNames.mirrorResults, ['reason', 'source'], '')]),
    );
    this.dashboard.addWidgets(
      graph(
        'Age of the oldest message (s)',
        (
          [
            ['mirror queue', queues.mirrorQueue],
            ['publish queue', queues.publishQueue],
            ['mirror DLQ', queues.mirrorDlq],
            ['publish DLQ', queues.publishDlq],
          ] as [string, Queue][]
        ).map(([label, q]) =>
          q.metricApproximateAgeOfOldestMessage({ label, period: PERIOD, statistic: 'Maximum' }),
        ),
      ),
      new GraphWidget({
        title: 'Manifest: version (left), age written and served (right, s)',
        width: 12,
        left: [own(metricNames.manifestVersion).with({ label: 'version' })],
        right: [
          own(metricNames.manifestAge).with({ label: 'written (publisher)' }),
          canary.servedManifestAge(PERIOD).with({ label: 'served (canary)' }),
        ],
      }),
    );
    this.dashboard.addWidgets(
      graph(
        'Agent-facing errors (CloudFront, % of requests)',
        ['4xxErrorRate', '5xxErrorRate'].map(
          (metricName) =>
            new Metric({
              namespace: 'AWS/CloudFront',
              metricName,
              // CloudFront publishes its metrics in us-east-1 only, with Region=Global.
              region: 'us-east-1',
              dimensionsMap: { DistributionId: props.distributionId, Region: 'Global' },
              statistic: 'Average',
              period: PERIOD,
              label: metricName.replace('ErrorRate', ''),
            }),
        ),
      ),
      graph('Webhook responses', [
        apiMetric(webhook.api, '4xx', '4xx'),
        apiMetric(webhook.api, '5xx', '5xx'),
        webhook.unauthorizedDeliveries(PERIOD).with({ label: '401 (secret failed)' }),
      ]),
    );
  }
}

function graph(title: string, left: IMetric[]): GraphWidget {
  return new GraphWidget({ title, left, width: 12 });
}

function apiMetric(api: HttpApi, metricName: string, label: string): Metric {
  return api.metric(metricName, { statistic: 'Sum', period: PERIOD, label });
}
