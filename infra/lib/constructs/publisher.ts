/**
 * The publish function: folds mirror results from the publish FIFO queue into the next manifest
 * (v2's index, its numbered copy and the nodes it pins; v1's documents while they are kept) and
 * signs it with the KMS key, under the signer role the storage stack keeps. It brings the
 * registry view (`registry/`, served at `/v2/`) in line with each version, and at the scheduled
 * re-sign deletes module bytes that no manifest has listed for longer than one lives.
 */
import { Duration } from 'aws-cdk-lib';
import { type IRole, Role } from 'aws-cdk-lib/aws-iam';
import type { IKey } from 'aws-cdk-lib/aws-kms';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import type { IQueue } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { ENV } from '../../../functions/config.ts';
import {
  contentPrefixes,
  publishedPrefixes,
  registryKeys,
  statePrefixes,
} from '../../../shared/core/storage-keys.ts';
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
      'Manifests are written as manifests/v2/index.json, manifests/v2/index/<version>.json, manifests/v2/nodes/sha256/<hex>.json and v1 manifests/<version>.json and latest.json',
    );
    // Garbage collection: since when each module is unlisted, and the bytes once that is long
    // enough ago. Listing modules/sha256/ and state/unlisted/ is the ListBucket every function has.
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      [`${statePrefixes.unlisted}*`],
      'Notes of when each module stopped being listed, named by its sha256; the publisher alone reads and writes them',
    );
    this.function.grantObjects(
      ['s3:DeleteObject'],
      [`${publishedPrefixes.modules}*`],
      'Module bytes no manifest has listed for longer than a manifest lives are deleted by sha256 under modules/sha256/',
    );
    // The newest observation of each tag, so a re-driven older record never moves a tag back.
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject'],
      [`${statePrefixes.tags}*`],
      'Per-tag observation notes, named by a hash of name and tag; the publisher alone reads and writes them',
    );
    // The registry view CloudFront serves at /v2/: written from each signed manifest, out of the
    // content intake kept (read, and the source of server-side copies) and the notes saying what
    // each listed entry reaches, with the publisher's own bookkeeping of what exists.
    this.function.grantObjects(
      ['s3:PutObject', 's3:DeleteObject'],
      [`${registryKeys.prefix}*`],
      'The registry view, registry/<source>/<repository>/{manifests,blobs,tags}/..., derived from each signed manifest',
    );
    // Garbage collection of kept content: blobs no listed entry has reached for longer than a
    // manifest lives go, with their notes and reference markers.
    this.function.grantObjects(
      ['s3:GetObject', 's3:DeleteObject'],
      [`${contentPrefixes.blobs}*`, `${statePrefixes.oci}*`],
      'Kept upstream manifests and blobs by sha256, and the notes naming what each mirrored digest reaches',
    );
    this.function.grantObjects(
      ['s3:DeleteObject'],
      [`${statePrefixes.ociRefs}*`],
      'Markers of which notes reference each kept blob, named by the blob and note hashes',
    );
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      [`${statePrefixes.unlistedOci}*`],
      'Notes of when each kept-content note stopped being listed; the publisher alone reads and writes them',
    );
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
      [`${statePrefixes.registry}*`, `${statePrefixes.registryPending}*`],
      'Which registry view objects each name has, and the names a publish has yet to bring in line',
    );
    // No KMS grant: kms:Sign and kms:GetPublicKey come from the key policy itself.
    this.function.fn.addEventSource(
      new SqsEventSource(props.publishQueue, { batchSize: 10, reportBatchItemFailures: true }),
    );
  }
}
