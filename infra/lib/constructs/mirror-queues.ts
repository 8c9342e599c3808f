/**
 * The two work queues and their dead-letter queues: mirror jobs (standard) and publish requests
 * (FIFO, one message group, so manifests are written one at a time).
 */
import { Duration, Validations } from 'aws-cdk-lib';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { keepLogicalId } from '../logical-id.ts';

export interface MirrorQueuesProps {
  /** Timeout of the function consuming the mirror queue. */
  readonly mirrorConsumerTimeout: Duration;
  /** Timeout of the function consuming the publish queue. */
  readonly publishConsumerTimeout: Duration;
}

export class MirrorQueues extends Construct {
  /**
   * Receives after which a message moves to its dead-letter queue. A failed mirror job is retried
   * each time its visibility timeout (six function timeouts: 12 minutes) runs out, so a registry
   * blip costs minutes and a job still failing reaches the dead-letter queue about an hour after
   * it first arrived.
   */
  readonly maxReceiveCount = 5;
  readonly mirrorQueue: Queue;
  readonly mirrorDlq: Queue;
  readonly publishQueue: Queue;
  readonly publishDlq: Queue;

  constructor(scope: Construct, id: string, props: MirrorQueuesProps) {
    super(scope, id);
    const queueDefaults = { enforceSSL: true, encryption: QueueEncryption.SQS_MANAGED };
    this.mirrorDlq = new Queue(this, 'MirrorDeadLetters', {
      ...queueDefaults,
      retentionPeriod: Duration.days(14),
    });
    this.mirrorQueue = new Queue(this, 'MirrorQueue', {
      ...queueDefaults,
      // AWS guidance: at least six times the function timeout, so retries of a slow batch do not overlap.
      visibilityTimeout: Duration.seconds(props.mirrorConsumerTimeout.toSeconds() * 6),
      retentionPeriod: Duration.days(4),
      deadLetterQueue: { queue: this.mirrorDlq, maxReceiveCount: this.maxReceiveCount },
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
      visibilityTimeout: Duration.seconds(props.publishConsumerTimeout.toSeconds() * 6),
      deadLetterQueue: { queue: this.publishDlq, maxReceiveCount: this.maxReceiveCount },
    });

    // The IDs the queues had when the stack declared them itself: a replaced queue loses its
    // messages. Their policies keep theirs too, since deleting a replaced queue policy clears
    // the queue's policy, TLS rule included.
    const kept: [Queue, string, string][] = [
      [this.mirrorDlq, 'MirrorDeadLettersF30BD67E', 'MirrorDeadLettersPolicy91A0B692'],
      [this.mirrorQueue, 'MirrorQueue88F9F423', 'MirrorQueuePolicy8959AA1E'],
      [this.publishDlq, 'PublishDeadLettersCD4087F7', 'PublishDeadLettersPolicy050E6744'],
      [this.publishQueue, 'PublishQueue2CCF7BE3', 'PublishQueuePolicyCDC11A0B'],
    ];
    for (const [queue, queueId, policyId] of kept) {
      keepLogicalId(queue, queueId);
      // Created by enforceSSL.
      keepLogicalId(queue.node.findChild('Policy'), policyId);
    }

    for (const dlq of [this.mirrorDlq, this.publishDlq]) {
      Validations.of(dlq).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason: 'This queue is itself the dead-letter queue; its depth is alarmed.',
      });
    }
  }
}
