/**
 * What an operator is paged for: messages in a dead-letter queue, failed invocations of any
 * function, and a manifest growing old (re-signing has stopped and agents will reject it).
 */
import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  type AlarmProps,
  ComparisonOperator,
  type IAlarmAction,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { Deployment } from '../deployment.ts';
import type { MirrorFunction } from './mirror-function.ts';
import type { MirrorQueues } from './mirror-queues.ts';

export const METRICS_NAMESPACE = 'WasmMirror';

export interface PipelineAlarmsProps {
  readonly deployment: Deployment;
  readonly queues: MirrorQueues;
  /** Alarmed on errors, by name: `webhook`, `mirror`, … */
  readonly functions: Record<string, MirrorFunction>;
  /** How often the re-sign schedule runs; a manifest older than two ticks is overdue. */
  readonly resignInterval: Duration;
}

export class PipelineAlarms extends Construct {
  readonly alarms: Alarm[] = [];
  private readonly action: IAlarmAction | undefined;

  constructor(scope: Construct, id: string, props: PipelineAlarmsProps) {
    super(scope, id);
    const { deployment, queues } = props;
    const { config } = deployment;
    this.action = deployment.alarmTopicArn
      ? new SnsAction(Topic.fromTopicArn(this, 'AlarmTopic', deployment.alarmTopicArn))
      : undefined;

    for (const [id, dlq] of [
      ['MirrorDeadLettersAlarm', queues.mirrorDlq],
      ['PublishDeadLettersAlarm', queues.publishDlq],
    ] as const) {
      this.alarm(
        id,
        dlq.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        {
          alarmDescription: `Messages in ${id.replace('Alarm', '')}: jobs that failed ${queues.maxReceiveCount} times. See infra/README.md.`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        },
      );
    }
    for (const [name, f] of Object.entries(props.functions)) {
      this.alarm(
        `${cap(name)}ErrorsAlarm`,
        f.fn.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
        {
          alarmDescription: `The ${name} function failed invocations.`,
          threshold: 1,
          evaluationPeriods: 1,
          comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
          treatMissingData: TreatMissingData.NOT_BREACHING,
        },
      );
    }
    const ttlSeconds = config.mirror.manifestTtlMs / 1000;
    const resignBeforeSeconds = config.mirror.resignBeforeMs / 1000;
    this.alarm(
      'ManifestAgeAlarm',
      new Metric({
        namespace: METRICS_NAMESPACE,
        metricName: 'manifest_age_seconds',
        dimensionsMap: { service: 'wasm-mirror', mirror: config.mirror.name },
        statistic: 'Maximum',
        // Two schedule ticks: a missing datapoint means the publisher has stopped running.
        period: Duration.seconds(Math.min(props.resignInterval.toSeconds() * 2, 86_400)),
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
  }

  private alarm(id: string, metric: IMetric, props: Omit<AlarmProps, 'metric'>): Alarm {
    const alarm = new Alarm(this, id, { metric, ...props });
    if (this.action) alarm.addAlarmAction(this.action);
    this.alarms.push(alarm);
    return alarm;
  }
}

const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);
