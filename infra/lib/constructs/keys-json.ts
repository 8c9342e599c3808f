/**
 * keys.json as a custom resource: every deploy writes the public keys agents verify with (all
 * generations, oldest first) and queues a startup re-sign, so a new mirror has a manifest at once.
 */
import { CustomResource, Duration } from 'aws-cdk-lib';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../../../functions/config.ts';
import { storageKeys } from '../../../shared/core/storage-keys.ts';
import type { Deployment } from '../deployment.ts';
import { keepLogicalId } from '../logical-id.ts';
import { MirrorFunction } from './mirror-function.ts';

export interface KeysJsonProps {
  readonly deployment: Deployment;
  readonly bucket: IBucket;
  readonly publishQueue: IQueue;
  /** The key the publisher signs with. */
  readonly signingKey: IKey;
  /** Every generation's key, oldest first. */
  readonly signingKeys: IKey[];
}

export class KeysJson extends Construct {
  readonly function: MirrorFunction;

  constructor(scope: Construct, id: string, props: KeysJsonProps) {
    super(scope, id);
    const { deployment, signingKey, signingKeys } = props;
    this.function = new MirrorFunction(this, 'Function', {
      entry: 'keys',
      description: 'Custom resource: writes keys.json from the KMS public key',
      deployment,
      bucket: props.bucket,
      timeout: Duration.minutes(1),
      memorySize: 256,
      environment: {
        // A deploy ends with a startup re-sign queued, so a new mirror has a manifest at once.
        [ENV.publishQueueUrl]: props.publishQueue.queueUrl,
        [ENV.signingKeyId]: signingKey.keyArn,
        [ENV.publishedKeyIds]: signingKeys.map((k) => k.keyArn).join(','),
      },
    });
    keepLogicalId(this.function.logGroup, 'KeysLogs7981C88C');
    const fn = this.function.fn;
    this.function.grantObjects(['s3:GetObject', 's3:PutObject'], [storageKeys.keys]);
    props.publishQueue.grantSendMessages(fn);
    // Every published key, not only the active one: keys.json lists them all.
    for (const key of signingKeys) key.grant(fn, 'kms:GetPublicKey', 'kms:DescribeKey');

    new CustomResource(this, 'Json', {
      serviceToken: fn.functionArn,
      // The function always answers; should it not, the deploy fails in minutes, not in an hour.
      serviceTimeout: Duration.minutes(5),
      resourceType: 'Custom::WasmMirrorKeysJson',
      // A new key (rotation) changes the properties, which re-runs the resource and appends it.
      properties: {
        KeyArn: signingKey.keyArn,
        PublishedKeyArns: signingKeys.map((k) => k.keyArn),
        Mirror: deployment.config.mirror.name,
      },
    });
  }
}
