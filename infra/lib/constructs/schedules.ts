/**
 * EventBridge rules feeding the queues: ECR push events and per-source reconcile schedules onto
 * the mirror queue, the re-sign schedule onto the publish queue.
 */
import { Duration } from 'aws-cdk-lib';
import { Rule, RuleTargetInput, Schedule } from 'aws-cdk-lib/aws-events';
import { SqsQueue } from 'aws-cdk-lib/aws-events-targets';
import { Construct } from 'constructs';
import type { Deployment } from '../deployment.ts';
import { repositoryNameFilters } from '../ecr.ts';
import type { MirrorQueues } from './mirror-queues.ts';

/** A quarter of the re-sign window, between 5 minutes and 12 hours: several chances before expiry. */
export function resignInterval(resignBeforeMs: number): Duration {
  const minutes = Math.min(Math.max(Math.floor(resignBeforeMs / 4 / 60_000), 5), 12 * 60);
  return minutes % 60 === 0 ? Duration.hours(minutes / 60) : Duration.minutes(minutes);
}

export interface SchedulesProps {
  readonly deployment: Deployment;
  readonly queues: MirrorQueues;
}

export class Schedules extends Construct {
  /** How often the manifest is re-signed. */
  readonly resignInterval: Duration;

  constructor(scope: Construct, id: string, props: SchedulesProps) {
    super(scope, id);
    const { config } = props.deployment;
    const { mirrorQueue, mirrorDlq, publishQueue } = props.queues;
    this.resignInterval = resignInterval(config.mirror.resignBeforeMs);

    if (config.sources.some((s) => s.type === 'ecr')) {
      // Pushes to repositories outside every allow-list never reach the queue.
      const names = repositoryNameFilters(config);
      new Rule(this, 'EcrPushRule', {
        description: 'ECR image pushes to the mirror queue',
        eventPattern: {
          source: ['aws.ecr'],
          detailType: ['ECR Image Action'],
          detail: {
            'action-type': ['PUSH'],
            result: ['SUCCESS'],
            ...(names ? { 'repository-name': names } : {}),
          },
        },
        targets: [new SqsQueue(mirrorQueue, { deadLetterQueue: mirrorDlq, retryAttempts: 10 })],
      });
    }
    new Rule(this, 'ResignSchedule', {
      description: 'Re-signs the manifest before it expires',
      schedule: Schedule.rate(this.resignInterval),
      targets: [
        new SqsQueue(publishQueue, {
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
          new SqsQueue(mirrorQueue, {
            message: RuleTargetInput.fromObject({ kind: 'reconcile', sourceId: source.id }),
          }),
        ],
      });
    }
  }
}
