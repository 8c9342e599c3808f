/**
 * What an operator is told about, through one SNS topic every alarm notifies: messages in a
 * dead-letter queue or waiting too long in any queue, failed invocations of any function, mirror
 * throttles, webhook 5xx and a surge of 401s, a manifest growing old as written (publisher) and as
 * served (canary). The README's "Reading the alarms" says what each means and what to do.
 */
import { Aws, Duration, Validations } from 'aws-cdk-lib';
import {
  Alarm,
  type AlarmProps,
  ComparisonOperator,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { type ITopic, Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import type { Queue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { metricNames } from '../../../shared/core/metrics.ts';
import type { Deployment } from '../deployment.ts';
import type { Canary } from './canary.ts';
import type { MirrorFunction } from './mirror-function.ts';
import type { MirrorQueues } from './mirror-queues.ts';
import type { WebhookApi } from './webhook-api.ts';

export interface PipelineAlarmsProps {
  readonly deployment: Deployment;
  readonly queues: MirrorQueues;
  /** Alarmed on errors, by name: `webhook`, `mirror`, … */
  readonly functions: Record<string, MirrorFunction>;
  /** Alarmed on throttles. */
  readonly mirror: MirrorFunction;
  readonly webhook: WebhookApi;
  readonly canary: Canary;
  /** How often the re-sign schedule runs; a manifest older than two ticks is overdue. */
  readonly resignInterval: Duration;
}

/** Thresholds, in seconds, on the age of the oldest message. */
const QUEUE_AGE_SECONDS = {
  // Past two retries (12 minutes apart): more than a registry blip.
  mirror: 30 * 60,
  // A FIFO message group blocked behind a failing publish: two retries, 6 minutes apart.
  publish: 15 * 60,
  // Dead letters are kept 14 days; three days leaves time to redrive them.
  deadLetters: 3 * 86_400,
};
/** 401s in five minutes that are more than a registry retrying one delivery. */
const UNAUTHORIZED_SURGE = 10;
const WEBHOOK_5XX = 3;

export class PipelineAlarms extends Construct {
  readonly alarms: Alarm[] = [];
  /** Every alarm notifies this topic, on alarm and on recovery. */
  readonly topic: ITopic;
  private readonly action: SnsAction;

  constructor(scope: Construct, id: string, props: PipelineAlarmsProps) {
    super(scope, id);
    const { deployment, queues } = props;
    const { config } = deployment;
    this.topic = deployment.alarmTopicArn
      ? Topic.fromTopicArn(this, 'AlarmTopic', deployment.alarmTopicArn)
      : this.createTopic(deployment);
    this.action = new SnsAction(this.topic);

    const fiveMinutes = Duration.minutes(5);
    for (const [id, dlq] of [
      ['MirrorDeadLettersAlarm', queues.mirrorDlq],
      ['PublishDeadLettersAlarm', queues.publishDlq],
    ] as const) {
      this.alarm(
        id,
        dlq.metricApproximateNumberOfMessagesVisible({ period: fiveMinutes, statistic: 'Maximum' }),
        {
          alarmDescription: `Messages in ${id.replace('Alarm', '')}: jobs that failed ${queues.maxReceiveCount} times. See the README, "Reading the alarms".`,
          threshold: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        },
      );
    }
    const ages: [string, Queue, number, string][] = [
      ['MirrorQueueAgeAlarm', queues.mirrorQueue, QUEUE_AGE_SECONDS.mirror, 'a mirror job is still not done'],
      ['PublishQueueAgeAlarm', queues.publishQueue, QUEUE_AGE_SECONDS.publish, 'publishing is blocked'],
      [
        'MirrorDeadLettersAgeAlarm',
        queues.mirrorDlq,
        QUEUE_AGE_SECONDS.deadLetters,
        'dead letters wait for a redrive (kept 14 days)',
      ],
      [
        'PublishDeadLettersAgeAlarm',
        queues.publishDlq,
        QUEUE_AGE_SECONDS.deadLetters,
        'dead letters wait for a redrive (kept 14 days)',
      ],
    ];
    for (const [id, queue, seconds, meaning] of ages) {
      this.alarm(
        id,
        queue.metricApproximateAgeOfOldestMessage({ period: fiveMinutes, statistic: 'Maximum' }),
        {
          alarmDescription: `The oldest message is over ${humanSeconds(seconds)} old: ${meaning}.`,
          threshold: seconds,
          comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        },
      );
    }
    for (const [name, f] of Object.entries(props.functions)) {
      this.alarm(`${cap(name)}ErrorsAlarm`, f.fn.metricErrors({ period: fiveMinutes, statistic: 'Sum' }), {
        alarmDescription: `The ${name} function failed invocations.`,
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      });
    }
    this.alarm(
      'MirrorThrottlesAlarm',
      props.mirror.fn.metricThrottles({ period: fiveMinutes, statistic: 'Sum' }),
      {
        alarmDescription:
          'Mirror invocations were throttled: the account or reserved concurrency is below the event source maximum.',
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );
    this.alarm(
      'WebhookServerErrorsAlarm',
      props.webhook.api.metricServerError({ period: fiveMinutes, statistic: 'Sum' }),
      {
        alarmDescription: `The webhook API answered 5xx at least ${WEBHOOK_5XX} times in 5 minutes: registries retry, but deliveries are waiting.`,
        threshold: WEBHOOK_5XX,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      },
    );
    this.alarm('WebhookUnauthorizedAlarm', props.webhook.unauthorizedDeliveries(fiveMinutes), {
      alarmDescription: `At least ${UNAUTHORIZED_SURGE} webhook deliveries in 5 minutes failed their secret: a registry with an outdated secret, or someone guessing.`,
      threshold: UNAUTHORIZED_SURGE,
      comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    });

    const ttlSeconds = config.mirror.manifestTtlMs / 1000;
    const resignBeforeSeconds = config.mirror.resignBeforeMs / 1000;
    // Half of the re-sign window left before expiry.
    const ageThreshold = Math.round(ttlSeconds - resignBeforeSeconds / 2);
    this.alarm(
      'ManifestAgeAlarm',
      new Metric({
        namespace: deployment.metricsNamespace,
        metricName: metricNames.manifestAge,
        dimensionsMap: { service: 'wasm-mirror', mirror: config.mirror.name },
        statistic: 'Maximum',
        // Two schedule ticks: a missing datapoint means the publisher has stopped running.
        period: Duration.seconds(Math.min(props.resignInterval.toSeconds() * 2, 86_400)),
      }),
      {
        alarmDescription:
          'The newest manifest is old: re-signing is failing and agents will reject it at expiresAt. See the README, "Reading the alarms".',
        threshold: ageThreshold,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.BREACHING,
      },
    );
    this.alarm(
      'RegistryViewAlarm',
      new Metric({
        namespace: deployment.metricsNamespace,
        metricName: metricNames.registryViewFailures,
        dimensionsMap: { service: 'wasm-mirror', mirror: config.mirror.name },
        statistic: 'Sum',
        period: Duration.minutes(15),
      }),
      {
        alarmDescription:
          "The registry API (/v2/) lags the signed manifest for some repositories, half an hour running: the publish function's log says which and why ('registry view of a name could not be brought in line').",
        threshold: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // Each publish retries; one failed run is not worth a page, two periods in a row are.
        evaluationPeriods: 2,
      },
    );
    this.alarm('ServedManifestAgeAlarm', props.canary.servedManifestAge(Duration.minutes(15)), {
      alarmDescription:
        'The manifest CloudFront serves is old, or the canary could not fetch and verify it: agents see what the canary sees.',
      threshold: ageThreshold,
      comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      // The canary publishes nothing when it cannot verify the manifest.
      treatMissingData: TreatMissingData.BREACHING,
      evaluationPeriods: 2,
    });
  }

  private createTopic(deployment: Deployment): Topic {
    const topic = new Topic(this, 'AlarmTopic', {
      displayName: `Wasm Mirror ${deployment.config.mirror.name} alarms`,
      enforceSSL: true,
    });
    // The topic policy replaces SNS's default one, so CloudWatch is let in by name; only this
    // account's alarms.
    topic.addToResourcePolicy(
      new PolicyStatement({
        sid: 'CloudWatchAlarmsPublish',
        principals: [new ServicePrincipal('cloudwatch.amazonaws.com')],
        actions: ['sns:Publish'],
        resources: [topic.topicArn],
        conditions: {
          ArnLike: {
            'aws:SourceArn': `arn:${Aws.PARTITION}:cloudwatch:${Aws.REGION}:${Aws.ACCOUNT_ID}:alarm:*`,
          },
          StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        },
      }),
    );
    if (deployment.alarmEmail) topic.addSubscription(new EmailSubscription(deployment.alarmEmail));
    Validations.of(topic).acknowledge({
      id: 'AwsSolutions-SNS2',
      reason:
        'Alarm notifications carry alarm names and states, no secrets; CloudWatch cannot publish to a topic under the AWS-managed SNS key, and a customer-managed key would cost more than the alarms.',
    });
    return topic;
  }

  private alarm(
    id: string,
    metric: IMetric,
    props: Omit<AlarmProps, 'metric' | 'evaluationPeriods'> & { evaluationPeriods?: number },
  ): Alarm {
    const alarm = new Alarm(this, id, {
      metric,
      evaluationPeriods: 1,
      treatMissingData: TreatMissingData.NOT_BREACHING,
      ...props,
    });
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
    this.alarms.push(alarm);
    return alarm;
  }
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

function humanSeconds(seconds: number): string {
  if (seconds % 86_400 === 0) return `${seconds / 86_400} days`;
  if (seconds % 3600 === 0) return `${seconds / 3600} hours`;
  return `${seconds / 60} minutes`;
}
