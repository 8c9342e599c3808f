/**
 * The publish function: folds mirror results from the publish FIFO queue into the next manifest
 * and signs it with the KMS key, under the signer role the storage stack keeps.
 */
import { Duration } from 'aws-cdk-lib';
import { type IRole, Role } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../../../functions/config.ts';
import { publishedPrefixes, statePrefixes } from '../../../shared/core/storage-keys.ts';
import { type Deployment, publishFunctionName } from '../deployment.ts';
import { keepLogicalId } from '../logical-id.ts';
import { MirrorFunction } from './mirror-function.ts';

export const PUBLISH_TIMEOUT = Duration.minutes(1);

export interface PublisherProps {
  readonly deployment: Deployment;
  readonly bucket: IBucket;
  readonly publishQueue: IQueue;
  /** The storage stack's signer role: the only principal the key policy lets sign. */
  readonly signerRole: IRole;
  /** The key manifests are signed with. */
  readonly signingKey: IKey;
}

export class Publisher extends Construct {
  readonly function: MirrorFunction;

  constructor(scope: Construct, id: string, props: PublisherProps) {
    super(scope, id);
    // Imported so the grants below land in this stack while the role (and the key policy naming
    // it) stays in the storage stack.
    const role = Role.fromRoleArn(this, 'SignerRole', props.signerRole.roleArn);
    this.function = new MirrorFunction(this, 'Function', {
      entry: 'publish',
      // The name the signer role's policy lets sign (storage stack): only this function signs.
      functionName: publishFunctionName(props.deployment.config.mirror.name),
      description: 'Folds mirror results into the next KMS-signed manifest',
      deployment: props.deployment,
      bucket: props.bucket,
      timeout: PUBLISH_TIMEOUT,
      memorySize: 512,
      role,
      environment: { [ENV.signingKeyId]: props.signingKey.keyArn },
    });
    keepLogicalId(this.function.logGroup, 'PublishLogs921C90B3');
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject'],
      [`${publishedPrefixes.manifests}*`],
      'Manifests are written as manifests/<version>.json and latest.json',
    );
    // The newest observation of each tag, so a re-driven older record never moves a tag back.
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject'],
      [`${statePrefixes.tags}*`],
      'Per-tag observation notes, named by a hash of name and tag; the publisher alone reads and writes them',
    );
    // No KMS grant: kms:Sign and kms:GetPublicKey come from the key policy itself.
    this.function.fn.addEventSource(
      new SqsEventSource(props.publishQueue, { batchSize: 10, reportBatchItemFailures: true }),
    );
  }
}
