/**
 * The registry-facing entry: an HTTP API with POST /hooks/{sourceId} (and /{token}) routed to
 * the webhook function, which authenticates each delivery and queues mirror jobs.
 */
import { Duration, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import { HttpApi, HttpMethod, HttpStage, LogGroupLogDestination } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Metric } from 'aws-cdk-lib/aws-cloudwatch';
import { FilterPattern, LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../../../functions/config.ts';
import { statePrefixes } from '../../../shared/core/storage-keys.ts';
import { type Deployment, secretsPrefix } from '../deployment.ts';
import { keepLogicalId } from '../logical-id.ts';
import { MirrorFunction } from './mirror-function.ts';

export interface WebhookApiProps {
  readonly deployment: Deployment;
  readonly bucket: IBucket;
  /** Where accepted deliveries become mirror jobs. */
  readonly mirrorQueue: IQueue;
}

/**
 * Routes and the logical IDs they had when the stack declared the API itself. The API keeps its
 * URL (configured in every registry), and the stage and routes keep theirs because a replacement
 * would collide with the $default stage and route keys still in place.
 */
const ROUTES = [
  { path: '/hooks/{sourceId}', logicalId: 'WebhookApiPOSThookssourceId998C1499' },
  { path: '/hooks/{sourceId}/{token}', logicalId: 'WebhookApiPOSThookssourceIdtoken9B6AB771' },
];

export class WebhookApi extends Construct {
  readonly function: MirrorFunction;
  readonly api: HttpApi;
  /** Base URL of the webhook routes; append the source id (and the token, for URL-token sources). */
  readonly baseUrl: string;
  readonly accessLogs: LogGroup;
  private readonly deployment: Deployment;

  constructor(scope: Construct, id: string, props: WebhookApiProps) {
    super(scope, id);
    const { deployment, bucket, mirrorQueue } = props;
    const { config } = deployment;
    this.deployment = deployment;

    this.function = new MirrorFunction(this, 'Function', {
      entry: 'webhook',
      description: 'Receives registry webhooks and queues mirror jobs',
      deployment,
      bucket,
      timeout: Duration.seconds(15),
      memorySize: 256,
      environment: { [ENV.mirrorQueueUrl]: mirrorQueue.queueUrl },
    });
    keepLogicalId(this.function.logGroup, 'WebhookLogsAA703ADA');
    // Its delivery markers only (HEAD to find a replay, a create to record one): nothing the
    // internet-facing function writes is read as truth by the mirror or the publisher.
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject'],
      [`${statePrefixes.deliveries}*`],
      'Webhook delivery-id markers, named by a hash of the delivery id',
    );
    mirrorQueue.grantSendMessages(this.function.fn);
    // Secrets by name, not by a cross-stack export: removing or renaming a source then never
    // blocks a deploy on an export still in use. Only webhook secrets; pull credentials are the mirror's.
    const webhookSecrets = new Set(config.sources.flatMap((s) => s.webhookSecretEnv ?? []));
    for (const name of [...webhookSecrets].sort()) {
      Secret.fromSecretNameV2(this, `Secret-${name}`, `${secretsPrefix(config)}${name}`).grantRead(
        this.function.fn,
      );
    }

    this.api = new HttpApi(this, 'Api', {
      // The name it had before this construct: it defaults to the construct id.
      apiName: 'WebhookApi',
      description: 'Registry webhooks for Wasm Mirror',
      createDefaultStage: false,
    });
    keepLogicalId(this.api, 'WebhookApi28122C53');
    const accessLogs = new LogGroup(this, 'AccessLogs', { retention: RetentionDays.ONE_MONTH });
    keepLogicalId(accessLogs, 'WebhookApiAccessLogs52B66C6B');
    this.accessLogs = accessLogs;
    const stage = new HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: 50, burstLimit: 100 },
      accessLogSettings: {
        destination: new LogGroupLogDestination(accessLogs),
        // routeKey, not path: the /{token} variant carries a secret that must not reach the logs.
        format: AccessLogFormat.custom(
          JSON.stringify({
            requestId: '$context.requestId',
            ip: '$context.identity.sourceIp',
            time: '$context.requestTime',
            route: '$context.routeKey',
            status: '$context.status',
            length: '$context.responseLength',
            latencyMs: '$context.responseLatency',
            userAgent: '$context.identity.userAgent',
            // A constant, so the 401 count below carries the mirror's name as its dimension.
            mirror: config.mirror.name,
          }),
        ),
      },
    });
    keepLogicalId(stage, 'WebhookApiStageA0F7F44D');

    const integration = new HttpLambdaIntegration('WebhookIntegration', this.function.fn);
    for (const { path, logicalId } of ROUTES) {
      for (const route of this.api.addRoutes({ path, methods: [HttpMethod.POST], integration })) {
        keepLogicalId(route, logicalId);
        Validations.of(route).acknowledge({
          id: 'AwsSolutions-APIG4',
          reason:
            'Registries cannot sign requests with IAM or present JWTs; each delivery is authenticated in the function by the source secret (HMAC, static header or URL token) from Secrets Manager.',
        });
      }
    }
    this.baseUrl = `${this.api.apiEndpoint}/hooks/`;

    // Counted from the access logs, whose format this construct owns: a failed secret answers 401
    // whatever the sender, and the API's own metrics only count 4xx as a whole.
    accessLogs.addMetricFilter('UnauthorizedDeliveries', {
      filterPattern: FilterPattern.stringValue('$.status', '=', '401'),
      metricNamespace: deployment.metricsNamespace,
      metricName: UNAUTHORIZED_METRIC,
      metricValue: '1',
      dimensions: { mirror: '$.mirror' },
    });
  }

  /** Deliveries refused with 401 (a wrong or missing secret), summed over `period`. */
  unauthorizedDeliveries(period: Duration): Metric {
    return new Metric({
      namespace: this.deployment.metricsNamespace,
      metricName: UNAUTHORIZED_METRIC,
      dimensionsMap: { mirror: this.deployment.config.mirror.name },
      statistic: 'Sum',
      period,
    });
  }
}

const UNAUTHORIZED_METRIC = 'webhook_unauthorized_total';
