/**
 * The stateless pipeline: HTTP API → webhook function → mirror queue → mirror function → publish
 * FIFO queue → publish function (KMS) → bucket, plus the ECR rule, the re-sign schedule, the
 * keys.json custom resource, the status page (index.html), the canary, the alarms and the
 * dashboard. Safe to destroy and redeploy; state lives in the storage stack. Each construct grants
 * its own functions what they use.
 */
import { Aws, CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import { Bucket } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { Canary } from './constructs/canary.ts';
import { Dashboard } from './constructs/dashboard.ts';
import { KeysJson } from './constructs/keys-json.ts';
import { MirrorQueues } from './constructs/mirror-queues.ts';
import { MIRROR_TIMEOUT, MirrorWorker } from './constructs/mirror-worker.ts';
import { PipelineAlarms } from './constructs/pipeline-alarms.ts';
import { PUBLISH_TIMEOUT, Publisher } from './constructs/publisher.ts';
import { Schedules } from './constructs/schedules.ts';
import { SiteObjects } from './constructs/site-objects.ts';
import { WebhookApi } from './constructs/webhook-api.ts';
import type { Deployment } from './deployment.ts';
import { mirrorBucketName } from './deployment.ts';
import type { StorageStack } from './storage-stack.ts';

export interface PipelineStackProps extends StackProps {
  readonly deployment: Deployment;
  readonly storage: StorageStack;
  /** The status page document, written as index.html; without it no page is written. */
  readonly statusPageHtml?: string;
}

export class PipelineStack extends Stack {
  readonly queues: MirrorQueues;
  readonly webhook: WebhookApi;
  readonly mirror: MirrorWorker;
  readonly publisher: Publisher;
  readonly keysJson: KeysJson;
  readonly siteObjects: SiteObjects;
  readonly schedules: Schedules;
  readonly canary: Canary;
  readonly alarms: PipelineAlarms;
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: PipelineStackProps) {
    super(scope, id, props);
    const { deployment, storage } = props;
    // Named, not exported: the grants then read the same in every synth, so each
    // acknowledgement can name its exact resource. The ARN is spelled out to keep the partition a
    // reference, as those acknowledgements write it, even when the region is known.
    const bucketName = mirrorBucketName(deployment.config.mirror.name);
    const bucket = Bucket.fromBucketAttributes(this, 'MirrorBucket', {
      bucketName,
      bucketArn: `arn:${Aws.PARTITION}:s3:::${bucketName}`,
    });

    this.queues = new MirrorQueues(this, 'Queues', {
      mirrorConsumerTimeout: MIRROR_TIMEOUT,
      publishConsumerTimeout: PUBLISH_TIMEOUT,
    });
    this.webhook = new WebhookApi(this, 'Webhook', {
      deployment,
      bucket,
      mirrorQueue: this.queues.mirrorQueue,
    });
    this.mirror = new MirrorWorker(this, 'Mirror', { deployment, bucket, queues: this.queues });
    this.publisher = new Publisher(this, 'Publish', {
      deployment,
      bucket,
      publishQueue: this.queues.publishQueue,
      signerRole: storage.signerRole,
      signingKey: storage.signingKey,
    });
    this.keysJson = new KeysJson(this, 'Keys', {
      deployment,
      bucket,
      publishQueue: this.queues.publishQueue,
      signingKey: storage.signingKey,
      signingKeys: storage.signingKeys,
    });
    this.siteObjects = new SiteObjects(this, 'SiteObjects', {
      bucket,
      ...(props.statusPageHtml === undefined ? {} : { html: props.statusPageHtml }),
    });
    this.schedules = new Schedules(this, 'Schedules', { deployment, queues: this.queues });
    const mirrorUrl = `https://${storage.distribution.distributionDomainName}`;
    this.canary = new Canary(this, 'Canary', { deployment, mirrorUrl });
    this.alarms = new PipelineAlarms(this, 'Alarms', {
      deployment,
      queues: this.queues,
      functions: {
        webhook: this.webhook.function,
        mirror: this.mirror.function,
        publish: this.publisher.function,
        keys: this.keysJson.function,
        canary: this.canary.function,
      },
      mirror: this.mirror.function,
      webhook: this.webhook,
      canary: this.canary,
      resignInterval: this.schedules.resignInterval,
    });
    this.dashboard = new Dashboard(this, 'Dashboard', {
      deployment,
      queues: this.queues,
      webhook: this.webhook,
      canary: this.canary,
      distributionId: storage.distribution.distributionId,
    });

    new CfnOutput(this, 'WebhookBaseUrl', {
      value: this.webhook.baseUrl,
      description: 'Append the source id (and /<token> for Quay and Docker Hub) for each registry webhook.',
    });
    new CfnOutput(this, 'MirrorUrl', { value: mirrorUrl });
    new CfnOutput(this, 'SigningKeyArn', { value: storage.signingKey.keyArn });
    new CfnOutput(this, 'MirrorDeadLetterQueueUrl', { value: this.queues.mirrorDlq.queueUrl });
    new CfnOutput(this, 'PublishQueueUrl', {
      value: this.queues.publishQueue.queueUrl,
      description: 'Send {"kind":"resign","reason":"manual"} (group "publish") to re-sign now.',
    });
    new CfnOutput(this, 'AlarmTopicArn', {
      value: this.alarms.topic.topicArn,
      description: 'Every alarm notifies this topic; subscribe to it (or pass -c alarmEmail=…).',
    });
  }
}
