/**
 * The Lambda composition root: builds the AWS adapters and Powertools utilities once per
 * container (module scope in each entry point) and hands the shared use cases their ports.
 * Tests build the same runtime with emulator-backed clients through `overrides`.
 */

import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import { ECRClient } from '@aws-sdk/client-ecr';
import { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SQSClient } from '@aws-sdk/client-sqs';
import { createMirrorApp, type MirrorApp } from '../shared/core/app.ts';
import { loadConfigFile, type MirrorConfig } from '../shared/core/config.ts';
import type { MirrorJob } from '../shared/core/domain.ts';
import { WasmMirrorError } from '../shared/core/errors.ts';
import type { PipelineDeps } from '../shared/core/pipeline/context.ts';
import {
  type Clock,
  type PublishRequest,
  type QueueProducer,
  type SecretSource,
  type Signer,
  systemClock,
  type WasmPuller,
} from '../shared/core/ports.ts';
import { OciWasmPuller } from '../shared/core/wasm/puller.ts';
import { EcrCredentials } from './adapters/ecr-credentials.ts';
import { KmsSigner } from './adapters/kms-signer.ts';
import { S3ObjectStore } from './adapters/s3-object-store.ts';
import { SecretsManagerSecretSource } from './adapters/secrets.ts';
import { SqsQueueProducer } from './adapters/sqs-queue-producer.ts';
import { powertoolsLogger, powertoolsMetrics } from './adapters/telemetry.ts';
import type { FunctionEnv } from './config.ts';

export interface Powertools {
  logger: Logger;
  metrics: Metrics;
  tracer: Tracer;
}

export interface AwsRuntime {
  env: Readonly<FunctionEnv>;
  config: MirrorConfig;
  deps: PipelineDeps;
  /** The use cases, built once per container from `deps`. */
  app: MirrorApp;
  powertools: Powertools;
  /** A signer for another key of this mirror (keys.json lists every published key). */
  signerFor(keyId: string): Signer;
}

export interface RuntimeOverrides {
  config?: MirrorConfig;
  s3?: S3Client;
  sqs?: SQSClient;
  kms?: KMSClient;
  secretsManager?: SecretsManagerClient;
  secrets?: SecretSource;
  puller?: WasmPuller;
  clock?: Clock;
  powertools?: Partial<Powertools>;
}

export async function createAwsRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides = {},
): Promise<AwsRuntime> {
  const config = overrides.config ?? (await loadConfigFile(env.configFile));
  const logger =
    overrides.powertools?.logger ?? new Logger({ serviceName: env.serviceName, logLevel: env.logLevel });
  const powertools: Powertools = {
    logger,
    metrics:
      overrides.powertools?.metrics ??
      new Metrics({
        namespace: env.metricsNamespace,
        serviceName: env.serviceName,
        // Mirror names let one account run several mirrors and still tell their metrics apart.
        defaultDimensions: { mirror: config.mirror.name },
        // Its warnings (an invocation that recorded no metric) become log lines at the function's level.
        logger,
      }),
    tracer: overrides.powertools?.tracer ?? new Tracer({ serviceName: env.serviceName }),
  };
  const { tracer } = powertools;
  const common = {
    ...(env.region ? { region: env.region } : {}),
    ...(env.endpointUrl ? { endpoint: env.endpointUrl } : {}),
  };
  // Traced clients show each S3/SQS/KMS call as an X-Ray subsegment.
  const s3 =
    overrides.s3 ??
    tracer.captureAWSv3Client(new S3Client({ ...common, forcePathStyle: env.s3ForcePathStyle }));
  const sqs = overrides.sqs ?? tracer.captureAWSv3Client(new SQSClient(common));

  let kms: KMSClient | undefined;
  const kmsClient = () => {
    kms ??= overrides.kms ?? tracer.captureAWSv3Client(new KMSClient(common));
    return kms;
  };
  const ecr = new EcrCredentials({
    clientFor: (region) => tracer.captureAWSv3Client(new ECRClient({ ...common, region })),
  });
  const signerFor = (keyId: string): Signer => new KmsSigner({ keyId, client: kmsClient() });
  const deps: PipelineDeps = {
    config,
    store: new S3ObjectStore({ bucket: env.bucketName, client: s3 }),
    mirrorQueue: env.mirrorQueueUrl
      ? new SqsQueueProducer<MirrorJob>({ queueUrl: env.mirrorQueueUrl, client: sqs })
      : unavailableQueue('mirror queue', env),
    publishQueue: env.publishQueueUrl
      ? new SqsQueueProducer<PublishRequest>({ queueUrl: env.publishQueueUrl, client: sqs })
      : unavailableQueue('publish queue', env),
    puller: overrides.puller ?? new OciWasmPuller({ maxModuleBytes: config.mirror.maxModuleBytes }),
    signer: env.signingKeyId ? signerFor(env.signingKeyId) : unavailableSigner(env),
    secrets:
      overrides.secrets ??
      new SecretsManagerSecretSource({
        prefix: env.secretsPrefix,
        client: overrides.secretsManager ?? tracer.captureAWSv3Client(new SecretsManagerClient(common)),
      }),
    clock: overrides.clock ?? systemClock,
    logger: powertoolsLogger(powertools.logger),
    metrics: powertoolsMetrics(powertools.metrics),
    scratchDir: env.scratchDir,
    registryCredentials: (source) => ecr.forSource(source),
  };
  const app = createMirrorApp(deps, {
    onPermanentFailure: (job, error) => {
      // Acknowledged, not retried: the same bytes would fail the same way. The log is the record.
      deps.logger.warn('mirror job rejected', { job, code: error.code, message: error.message });
    },
  });
  return { env, config, deps, app, powertools, signerFor };
}

/** A port this function was not given (by its IAM role and environment): using it is a wiring bug. */
function notWired(what: string, env: Readonly<FunctionEnv>): WasmMirrorError {
  return new WasmMirrorError('INTERNAL', `the ${env.role} function has no ${what}`);
}

function unavailableQueue<T>(what: string, env: Readonly<FunctionEnv>): QueueProducer<T> {
  return {
    send: () => Promise.reject(notWired(what, env)),
  };
}

function unavailableSigner(env: Readonly<FunctionEnv>): Signer {
  const fail = () => Promise.reject(notWired('signing key', env));
  return { publicKeySpki: fail, keyId: fail, sign: fail };
}
