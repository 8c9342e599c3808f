/**
 * The stateless pipeline: HTTP API → webhook function → mirror queue → mirror function → publish
 * FIFO queue → publish function (KMS) → bucket, plus the ECR rule, the re-sign schedule, the
 * keys.json custom resource and the alarms. Safe to destroy and redeploy; state lives in the
 * storage stack.
 */
import { Aws, CfnOutput, CustomResource, Duration, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import { HttpApi, HttpMethod, HttpStage, LogGroupLogDestination } from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import {
  Alarm,
  ComparisonOperator,
  type IAlarmAction,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Rule, RuleTargetInput, Schedule } from 'aws-cdk-lib/aws-events';
import { SqsQueue } from 'aws-cdk-lib/aws-events-targets';
import { type IRole, PolicyStatement, Role } from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { ecrRegistry } from '../../functions/adapters/ecr-host.ts';
import { ENV } from '../../functions/config.ts';
import type { Deployment } from './deployment.ts';
import { mirrorBucketName, secretsPrefix } from './deployment.ts';
import { MirrorFunction } from './mirror-function.ts';
import type { StorageStack } from './storage-stack.ts';

export interface PipelineStackProps extends StackProps {
  readonly deployment: Deployment;
  readonly storage: StorageStack;
}

export const METRICS_NAMESPACE = 'WasmMirror';
const MIRROR_TIMEOUT = Duration.minutes(5);
const PUBLISH_TIMEOUT = Duration.minutes(1);
const MAX_RECEIVE_COUNT = 5;
const MIRROR_MEMORY_MIB = 2048;
/** Room in /tmp beyond the staged files: bundled tools, partial writes, the runtime's own use. */
const SCRATCH_MARGIN_MIB = 512;
const MIB = 1024 * 1024;
/** Lambda's ephemeral storage range. */
const EPHEMERAL_MIN_MIB = 512;
const EPHEMERAL_MAX_MIB = 10_240;

/**
 * /tmp for the mirror function: a pull stages the module (up to the size cap) before upload, and
 * an invocation that timed out mid-pull leaves its staged file behind for the next one in the same
 * environment, so room for two modules plus a margin. Records run one at a time, so this does not
 * grow with the batch size.
 */
export function mirrorScratchMiB(maxModuleBytes: number): number {
  const needed = 2 * Math.ceil(maxModuleBytes / MIB) + SCRATCH_MARGIN_MIB;
  if (needed > EPHEMERAL_MAX_MIB) {
    throw new Error(
      `mirror.maxModuleSize needs ${needed} MiB of /tmp (two modules and a margin); Lambda allows at most ${EPHEMERAL_MAX_MIB} MiB`,
    );
  }
  return Math.max(needed, EPHEMERAL_MIN_MIB);
}

export class PipelineStack extends Stack {
  readonly mirrorQueue: Queue;
  readonly mirrorDlq: Queue;
  readonly publishQueue: Queue;
  readonly publishDlq: Queue;
  readonly functions: Record<'webhook' | 'mirror' | 'publish' | 'keys', MirrorFunction>;
  readonly api: HttpApi;
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: PipelineStackProps) {
    super(scope, id, props);
    const { deployment, storage } = props;
    const { config } = deployment;
    // Named, not exported: the grants below then read the same in every synth, so each
    // acknowledgement can name its exact resource.
    const bucketName = mirrorBucketName(config.mirror.name);
    const bucketArn = `arn:${Aws.PARTITION}:s3:::${bucketName}`;

    const ecrHosts = config.sources.filter((s) => s.type === 'ecr').map((s) => s.registry);

    // ---- queues -------------------------------------------------------------------------------
    const queueDefaults = { enforceSSL: true, encryption: QueueEncryption.SQS_MANAGED };
    this.mirrorDlq = new Queue(this, 'MirrorDeadLetters', {
      ...queueDefaults,
      retentionPeriod: Duration.days(14),
    });
    this.mirrorQueue = new Queue(this, 'MirrorQueue', {
      ...queueDefaults,
      // AWS guidance: at least six times the function timeout, so retries of a slow batch do not overlap.
      visibilityTimeout: Duration.seconds(MIRROR_TIMEOUT.toSeconds() * 6),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.mirrorDlq, maxReceiveCount: MAX_RECEIVE_COUNT },
    });
    this.publishDlq = new Queue(this, 'PublishDeadLetters', {
      ...queueDefaults,
      fifo: true,
      retentionPeriod: Duration.days(14),
    });
    this.publishQueue = new Queue(this, 'PublishQueue', {
      ...queueDefaults,
      fifo: true,
      // Needed by the EventBridge schedule target; producers still pass explicit dedupe ids.
      contentBasedDeduplication: true,
      visibilityTimeout: Duration.seconds(PUBLISH_TIMEOUT.toSeconds() * 6),
      deadLetterQueue: { queue: this.publishDlq, maxReceiveCount: MAX_RECEIVE_COUNT },
    });

    // ---- functions ----------------------------------------------------------------------------
    const common = {
      configPath: deployment.configPath,
      environment: { [ENV.bucketName]: bucketName, [ENV.secretsPrefix]: secretsPrefix(config) },
    };
    const webhook = new MirrorFunction(this, 'Webhook', {
      ...common,
      entry: 'webhook',
      description: 'Receives registry webhooks and queues mirror jobs',
      timeout: Duration.seconds(15),
      memorySize: 256,
      environment: { ...common.environment, [ENV.mirrorQueueUrl]: this.mirrorQueue.queueUrl },
    });
    const mirror = new MirrorFunction(this, 'Mirror', {
      ...common,
      entry: 'mirror',
      description: 'Pulls, verifies and stores one Wasm module per job',
      timeout: MIRROR_TIMEOUT,
      // Records are processed one at a time; a module near the cap is hashed, compiled and
      // uploaded from one function, which wants the memory (and the CPU that comes with it).
      memorySize: MIRROR_MEMORY_MIB,
      ephemeralStorageMiB: mirrorScratchMiB(config.mirror.maxModuleBytes),
      ...(deployment.reserveConcurrency
        ? { reservedConcurrentExecutions: deployment.mirrorConcurrency }
        : {}),
      environment: {
        ...common.environment,
        [ENV.publishQueueUrl]: this.publishQueue.queueUrl,
        // Reconcile runs in the mirror function and queues what changed on its own queue.
        [ENV.mirrorQueueUrl]: this.mirrorQueue.queueUrl,
      },
    });
    // Imported so the grants below land in this stack while the role (and the key policy naming
    // it) stays in the storage stack.
    const publisherRole: IRole = Role.fromRoleArn(this, 'PublisherRole', storage.signerRole.roleArn);
    const publish = new MirrorFunction(this, 'Publish', {
      ...common,
      entry: 'publish',
      description: 'Folds mirror results into the next KMS-signed manifest',
      timeout: PUBLISH_TIMEOUT,
      memorySize: 512,
      role: publisherRole,
      environment: { ...common.environment, [ENV.signingKeyId]: storage.signingKey.keyArn },
    });
    const keys = new MirrorFunction(this, 'Keys', {
      ...common,
      entry: 'keys',
      description: 'Custom resource: writes keys.json from the KMS public key',
      timeout: Duration.minutes(1),
      memorySize: 256,
      environment: {
        ...common.environment,
        // A deploy ends with a startup re-sign queued, so a new mirror has a manifest at once.
        [ENV.publishQueueUrl]: this.publishQueue.queueUrl,
        [ENV.signingKeyId]: storage.signingKey.keyArn,
        [ENV.publishedKeyIds]: storage.signingKeys.map((k) => k.keyArn).join(','),
      },
    });
    this.functions = { webhook, mirror, publish, keys };

    // ---- grants -------------------------------------------------------------------------------
    // Exact actions per prefix: each function touches only its part of the layout.
    const s3 = (f: MirrorFunction, actions: string[], paths: string[]) =>
      f.fn.addToRolePolicy(
        new PolicyStatement({ actions, resources: paths.map((p) => `${bucketArn}/${p}`) }),
      );
    // ListBucket lets a HEAD of a missing key answer 404 rather than 403.
    for (const f of [webhook, mirror, publish, keys]) {
      f.fn.addToRolePolicy(new PolicyStatement({ actions: ['s3:ListBucket'], resources: [bucketArn] }));
    }
    s3(webhook, ['s3:GetObject', 's3:PutObject'], ['state/*']);
    s3(mirror, ['s3:GetObject'], ['manifests/*']);
    s3(mirror, ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'], ['modules/*']);
    // What a digest extracted to, and what it was rejected for: no second pull of the same bytes.
    s3(mirror, ['s3:GetObject', 's3:PutObject'], ['state/pulled/*', 'state/rejected/*']);
    s3(publish, ['s3:GetObject', 's3:PutObject'], ['manifests/*']);
    s3(keys, ['s3:GetObject', 's3:PutObject'], ['keys.json']);
    this.mirrorQueue.grantSendMessages(webhook.fn);
    this.publishQueue.grantSendMessages(mirror.fn);
    this.mirrorQueue.grantSendMessages(mirror.fn);
    this.publishQueue.grantSendMessages(keys.fn);
    // The publisher's kms:Sign and kms:GetPublicKey come from the key policy itself. The keys
    // function reads every published key: keys.json lists them all, not only the active one.
    keys.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['kms:GetPublicKey', 'kms:DescribeKey'],
        resources: storage.signingKeys.map((k) => k.keyArn),
      }),
    );
    // Secrets by name, not by a cross-stack export: removing or renaming a source then never
    // blocks a deploy on an export still in use. The webhook reads only webhook secrets, the
    // mirror only pull credentials.
    const prefix = secretsPrefix(config);
    const webhookSecrets = new Set(config.sources.flatMap((s) => s.webhookSecretEnv ?? []));
    const credentialSecrets = new Set(
      config.sources.flatMap((s) =>
        s.credentials ? [s.credentials.usernameEnv, s.credentials.passwordEnv] : [],
      ),
    );
    const secretByName = new Map<string, ISecret>();
    const secretNamed = (name: string): ISecret => {
      let secret = secretByName.get(name);
      if (secret === undefined) {
        secret = Secret.fromSecretNameV2(this, `Secret-${name}`, `${prefix}${name}`);
        secretByName.set(name, secret);
      }
      return secret;
    };
    for (const name of [...webhookSecrets].sort()) secretNamed(name).grantRead(webhook.fn);
    for (const name of [...credentialSecrets].sort()) secretNamed(name).grantRead(mirror.fn);
    this.grantEcrPull(mirror, ecrHosts);

    mirror.fn.addEventSource(
      new SqsEventSource(this.mirrorQueue, {
        batchSize: 5,
        reportBatchItemFailures: true,
        // Bounded so one burst of pushes never hammers a registry.
        maxConcurrency: deployment.mirrorConcurrency,
      }),
    );
    publish.fn.addEventSource(
      new SqsEventSource(this.publishQueue, { batchSize: 10, reportBatchItemFailures: true }),
    );

    // ---- HTTP API -----------------------------------------------------------------------------
    this.api = new HttpApi(this, 'WebhookApi', {
      description: 'Registry webhooks for Wasm Mirror',
      createDefaultStage: false,
    });
    const accessLogs = new LogGroup(this, 'WebhookApiAccessLogs', { retention: RetentionDays.ONE_MONTH });
    new HttpStage(this, 'WebhookApiStage', {
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
          }),
        ),
      },
    });
    const integration = new HttpLambdaIntegration('WebhookIntegration', webhook.fn);
    for (const path of ['/hooks/{sourceId}', '/hooks/{sourceId}/{token}']) {
      this.api.addRoutes({ path, methods: [HttpMethod.POST], integration });
    }
    for (const route of this.api.node.findAll()) {
      if (route.node.id.startsWith('POST--hooks')) {
        Validations.of(route).acknowledge({
          id: 'AwsSolutions-APIG4',
          reason:
            'Registries cannot sign requests with IAM or present JWTs; each delivery is authenticated in the function by the source secret (HMAC, static header or URL token) from Secrets Manager.',
        });
      }
    }

    // ---- EventBridge --------------------------------------------------------------------------
    if (ecrHosts.length > 0) {
      new Rule(this, 'EcrPushRule', {
        description: 'ECR image pushes to the mirror queue',
        eventPattern: {
          source: ['aws.ecr'],
          detailType: ['ECR Image Action'],
          detail: { 'action-type': ['PUSH'], result: ['SUCCESS'] },
        },
        targets: [new SqsQueue(this.mirrorQueue, { deadLetterQueue: this.mirrorDlq, retryAttempts: 10 })],
      });
    }
    new Rule(this, 'ResignSchedule', {
      description: 'Re-signs the manifest before it expires',
      schedule: Schedule.rate(resignInterval(config.mirror.resignBeforeMs)),
      targets: [
        new SqsQueue(this.publishQueue, {
          messageGroupId: 'publish',
          message: RuleTargetInput.fromObject({ kind: 'resign', reason: 'schedule' }),
        }),
      ],
    });

    for (const source of config.sources) {
      if (source.reconcileIntervalMs === undefined) continue;
      new Rule(this, `Reconcile-${source.id}`, {
        description: `Lists ${source.id}'s repositories and mirrors what changed`,
        schedule: Schedule.rate(
          Duration.minutes(Math.max(1, Math.round(source.reconcileIntervalMs / 60_000))),
        ),
        targets: [
          new SqsQueue(this.mirrorQueue, {
            message: RuleTargetInput.fromObject({ kind: 'reconcile', sourceId: source.id }),
          }),
        ],
      });
    }

    // ---- keys.json ----------------------------------------------------------------------------
    new CustomResource(this, 'KeysJson', {
      serviceToken: keys.fn.functionArn,
      // The function always answers; should it not, the deploy fails in minutes, not in an hour.
      serviceTimeout: Duration.minutes(5),
      resourceType: 'Custom::WasmMirrorKeysJson',
      // A new key (rotation) changes the properties, which re-runs the resource and appends it.
      properties: {
        KeyArn: storage.signingKey.keyArn,
        PublishedKeyArns: storage.signingKeys.map((k) => k.keyArn),
        Mirror: config.mirror.name,
      },
    });

    // ---- alarms -------------------------------------------------------------------------------
    const action: IAlarmAction | undefined = deployment.alarmTopicArn
      ? new SnsAction(Topic.fromTopicArn(this, 'AlarmTopic', deployment.alarmTopicArn))
      : undefined;
    const alarm = (
      id: string,
      metric: IMetric,
      props: Omit<ConstructorParameters<typeof Alarm>[2], 'metric'>,
    ) => {
      const a = new Alarm(this, id, { metric, ...props });
      if (action) a.addAlarmAction(action);
      this.alarms.push(a);
      return a;
    };
    for (const [id, dlq] of [
      ['MirrorDeadLettersAlarm', this.mirrorDlq],
      ['PublishDeadLettersAlarm', this.publishDlq],
    ] as const) {
      alarm(
        id,
        dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        {
          alarmDescription: `Messages in ${id.replace('Alarm', '')}: jobs that failed ${MAX_RECEIVE_COUNT} times. See infra/README.md.`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        },
      );
    }
    for (const [name, f] of Object.entries(this.functions)) {
      alarm(`${cap(name)}ErrorsAlarm`, f.fn.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }), {
        alarmDescription: `The ${name} function failed invocations.`,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
    }
    const ttlSeconds = config.mirror.manifestTtlMs / 1000;
    const resignBeforeSeconds = config.mirror.resignBeforeMs / 1000;
    const interval = resignInterval(config.mirror.resignBeforeMs);
    alarm(
      'ManifestAgeAlarm',
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName: 'manifest_age_seconds',
        dimensionsMap: { service: 'wasm-mirror', mirror: config.mirror.name },
        statistic: 'Maximum',
        // Two schedule ticks: a missing datapoint means the publisher has stopped running.
        period: Duration.seconds(Math.min(interval.toSeconds() * 2, 86_400)),
      }),
      {
        alarmDescription:
          'The newest manifest is old: re-signing is failing and agents will reject it at expiresAt. See infra/README.md.',
        // Half of the re-sign window left before expiry.
        threshold: Math.round(ttlSeconds - resignBeforeSeconds / 2),
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.BREACHING,
      },
    );

    // ---- acknowledgements ---------------------------------------------------------------------
    const prefixReason =
      'Objects are content-addressed or numbered under one prefix of the layout (DESIGN.md, Storage layout); the grant is limited to that prefix and to GetObject/PutObject.';
    const ack = (f: MirrorFunction, finding: string, reason: string) =>
      // The publisher's role is imported, so its policy sits beside the import, not under the function.
      Validations.of(f === publish ? publisherRole : f).acknowledge({
        id: `AwsSolutions-IAM5[${finding}]`,
        reason,
      });
    ack(
      webhook,
      `Resource::${flatArn(bucketName, 'state/*')}`,
      'Webhook delivery-id markers live under state/; ' + prefixReason,
    );
    ack(
      mirror,
      `Resource::${flatArn(bucketName, 'manifests/*')}`,
      'The mirror reads the latest manifest to skip listed digests; ' + prefixReason,
    );
    ack(
      mirror,
      `Resource::${flatArn(bucketName, 'modules/*')}`,
      'Modules are stored by sha256 under modules/sha256/; ' + prefixReason,
    );
    for (const prefix of ['state/pulled/*', 'state/rejected/*']) {
      ack(
        mirror,
        `Resource::${flatArn(bucketName, prefix)}`,
        'Per-digest notes (what a manifest digest extracted to, or why it was rejected) keyed by a hash under state/; ' +
          prefixReason,
      );
    }
    ack(
      publish,
      `Resource::${flatArn(bucketName, 'manifests/*')}`,
      'Manifests are written as manifests/<version>.json and latest.json; ' + prefixReason,
    );
    for (const f of Object.values(this.functions)) {
      ack(
        f,
        'Resource::*',
        f === mirror && ecrHosts.length > 0
          ? 'X-Ray PutTraceSegments/PutTelemetryRecords and ecr:GetAuthorizationToken have no resource-level permissions.'
          : 'X-Ray PutTraceSegments/PutTelemetryRecords have no resource-level permissions.',
      );
    }
    for (const dlq of [this.mirrorDlq, this.publishDlq]) {
      Validations.of(dlq).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason: 'This queue is itself the dead-letter queue; its depth is alarmed.',
      });
    }

    new CfnOutput(this, 'WebhookBaseUrl', {
      value: `${this.api.apiEndpoint}/hooks/`,
      description: 'Append the source id (and /<token> for Quay and Docker Hub) for each registry webhook.',
    });
    new CfnOutput(this, 'MirrorUrl', { value: `https://${storage.distribution.distributionDomainName}` });
    new CfnOutput(this, 'SigningKeyArn', { value: storage.signingKey.keyArn });
    new CfnOutput(this, 'MirrorDeadLetterQueueUrl', { value: this.mirrorDlq.queueUrl });
    new CfnOutput(this, 'PublishQueueUrl', {
      value: this.publishQueue.queueUrl,
      description: 'Send {"kind":"resign","reason":"manual"} (group "publish") to re-sign now.',
    });
  }

  /** ECR sources pull with the function's own IAM identity, scoped to the configured registries. */
  private grantEcrPull(mirror: MirrorFunction, hosts: string[]): void {
    // The same host forms the function accepts (-fips endpoints, .amazonaws.com.cn in China).
    const repositories = [
      ...new Set(
        hosts.flatMap((host) => {
          const ecr = ecrRegistry(host);
          return ecr ? [`arn:${Aws.PARTITION}:ecr:${ecr.region}:${ecr.account}:repository/*`] : [];
        }),
      ),
    ];
    if (repositories.length === 0) return;
    mirror.fn.addToRolePolicy(
      new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
    );
    mirror.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['ecr:BatchGetImage', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchCheckLayerAvailability'],
        resources: repositories,
      }),
    );
    for (const arn of repositories) {
      Validations.of(mirror).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${arn.replace(Aws.PARTITION, '<AWS::Partition>')}]`,
        reason:
          'Pulls from the configured ECR registry; which repositories is decided by the source allow-list in code.',
      });
    }
  }
}

/** A quarter of the re-sign window, between 5 minutes and 12 hours: several chances before expiry. */
export function resignInterval(resignBeforeMs: number): Duration {
  const minutes = Math.min(Math.max(Math.floor(resignBeforeMs / 4 / 60_000), 5), 12 * 60);
  return minutes % 60 === 0 ? Duration.hours(minutes / 60) : Duration.minutes(minutes);
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** The form cdk-nag prints a resource ARN in, to acknowledge that exact finding. */
function flatArn(bucketName: string, path: string): string {
  return `arn:<AWS::Partition>:s3:::${bucketName}/${path}`
    .replace(Aws.ACCOUNT_ID, '<AWS::AccountId>')
    .replace(Aws.REGION, '<AWS::Region>');
}
