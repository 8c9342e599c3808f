/**
 * The mirror function and what it consumes: mirror jobs from the mirror queue (bounded
 * concurrency), pulls from registries (pull credentials, ECR by IAM), module bytes into the
 * bucket, and results onto the publish queue.
 */
import { Duration, Validations } from 'aws-cdk-lib';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type { IBucket } from 'aws-cdk-lib/aws-s3';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { ENV } from '../../../functions/config.ts';
import { contentPrefixes, publishedPrefixes, statePrefixes } from '../../../shared/core/storage-keys.ts';
import { type Deployment, DeploymentError, secretsPrefix } from '../deployment.ts';
import { ecrRepositories, repositoryArns } from '../ecr.ts';
import { keepLogicalId } from '../logical-id.ts';
import { MirrorFunction, nagArn } from './mirror-function.ts';
import type { MirrorQueues } from './mirror-queues.ts';

/**
 * One job's budget: a module at the size cap is pulled, hashed, compiled and uploaded within it.
 * Short enough that the queue's visibility timeout (six times this) retries a registry blip
 * within minutes; see MirrorQueues for the schedule.
 */
export const MIRROR_TIMEOUT = Duration.minutes(2);
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
    throw new DeploymentError(
      `mirror.maxModuleSize needs ${needed} MiB of /tmp (two modules and a margin); Lambda allows at most ${EPHEMERAL_MAX_MIB} MiB`,
    );
  }
  return Math.max(needed, EPHEMERAL_MIN_MIB);
}

export interface MirrorWorkerProps {
  readonly deployment: Deployment;
  readonly bucket: IBucket;
  readonly queues: MirrorQueues;
}

export class MirrorWorker extends Construct {
  readonly function: MirrorFunction;

  constructor(scope: Construct, id: string, props: MirrorWorkerProps) {
    super(scope, id);
    const { deployment, bucket, queues } = props;
    const { config } = deployment;

    this.function = new MirrorFunction(this, 'Function', {
      entry: 'mirror',
      description: 'Pulls, verifies and stores one Wasm module per job',
      deployment,
      bucket,
      timeout: MIRROR_TIMEOUT,
      // Records are processed one at a time; a module near the cap is hashed, compiled and
      // uploaded from one function, which wants the memory (and the CPU that comes with it).
      memorySize: MIRROR_MEMORY_MIB,
      ephemeralStorageMiB: mirrorScratchMiB(config.mirror.maxModuleBytes),
      // Only when asked for: a reservation fails the deploy on accounts with a low concurrency
      // quota. The event source's maximum concurrency bounds the pulls either way.
      ...(deployment.reservedConcurrency !== undefined
        ? { reservedConcurrentExecutions: deployment.reservedConcurrency }
        : {}),
      environment: {
        [ENV.publishQueueUrl]: queues.publishQueue.queueUrl,
        // Reconcile runs in the mirror function and queues what changed on its own queue.
        [ENV.mirrorQueueUrl]: queues.mirrorQueue.queueUrl,
      },
    });
    keepLogicalId(this.function.logGroup, 'MirrorLogs4F59672F');
    const fn = this.function.fn;

    this.function.grantObjects(
      ['s3:GetObject'],
      [`${publishedPrefixes.manifests}*`],
      'The mirror reads the latest manifest to skip listed digests',
    );
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
      [`${publishedPrefixes.modules}*`],
      'Modules are stored by sha256 under modules/sha256/',
    );
    // What a digest extracted to, what it was rejected for, and which kept upstream manifests and
    // blobs it reaches: no second pull of the same bytes.
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject'],
      [`${statePrefixes.pulled}*`, `${statePrefixes.rejected}*`, `${statePrefixes.oci}*`],
      'Per-digest notes (what a manifest digest extracted to, why it was rejected, which kept content it reaches) keyed by a hash under state/',
    );
    // The upstream manifests and blobs a pull verified, kept byte for byte (create-only, by digest).
    this.function.grantObjects(
      ['s3:GetObject', 's3:PutObject', 's3:AbortMultipartUpload'],
      [`${contentPrefixes.blobs}*`],
      'Upstream manifests and blobs a pull verified, stored by sha256 under blobs/sha256/',
    );
    // Which notes reach each kept blob, so garbage collection finds a blob's users by one listing.
    this.function.grantObjects(
      ['s3:PutObject'],
      [`${statePrefixes.ociRefs}*`],
      'Empty reference markers from each kept blob to the notes that reach it, keyed by sha256 and note hash under state/oci-refs/',
    );
    queues.publishQueue.grantSendMessages(fn);
    queues.mirrorQueue.grantSendMessages(fn);
    // Pull credentials by name, as the webhook reads its secrets; webhook secrets are not the mirror's.
    const credentials = new Set(
      config.sources.flatMap((s) =>
        s.credentials ? [s.credentials.usernameEnv, s.credentials.passwordEnv] : [],
      ),
    );
    for (const name of [...credentials].sort()) {
      Secret.fromSecretNameV2(this, `Secret-${name}`, `${secretsPrefix(config)}${name}`).grantRead(fn);
    }
    this.grantEcrPull(deployment);

    fn.addEventSource(
      new SqsEventSource(queues.mirrorQueue, {
        // One job per invocation: the timeout is one module's budget, and a slow pull never
        // times out (or delays by a visibility timeout) the jobs batched with it.
        batchSize: 1,
        reportBatchItemFailures: true,
        // Bounded so one burst of pushes never hammers a registry.
        maxConcurrency: deployment.mirrorConcurrency,
      }),
    );
  }

  /**
   * ECR sources pull with the function's own IAM identity, from the allow-listed repositories of
   * the configured registries only.
   */
  private grantEcrPull(deployment: Deployment): void {
    const registries = ecrRepositories(deployment.config);
    if (registries.length === 0) return;
    const resources = registries.flatMap(repositoryArns);
    this.function.fn.addToRolePolicy(
      new PolicyStatement({
        actions: ['ecr:BatchCheckLayerAvailability', 'ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage'],
        resources,
      }),
    );
    this.function.fn.addToRolePolicy(
      new PolicyStatement({ actions: ['ecr:GetAuthorizationToken'], resources: ['*'] }),
    );
    for (const arn of resources.filter((r) => r.includes('*'))) {
      this.function.acknowledgeWildcard(
        `Resource::${nagArn(arn)}`,
        'The repositories a source allow-list glob matches; the mirror checks the glob itself on every job.',
      );
    }
    // The function's own acknowledgement of Resource::* names X-Ray; this one names ECR.
    Validations.of(this).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason: 'ecr:GetAuthorizationToken has no resource-level permissions.',
    });
  }
}
