/**
 * What every Lambda composition root shares: the config, Powertools, the S3 store and the use
 * cases built once per container (module scope in each entry point). Each function's own root in
 * `roles/` adds only the AWS clients that function uses, so its bundle carries and its cold start
 * builds nothing else; a port a function was not given fails loudly if it is ever used. Tests
 * build the same roots with emulator-backed clients through `overrides`.
 */

import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type { KMSClient } from '@aws-sdk/client-kms';
import { S3Client } from '@aws-sdk/client-s3';
import type { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SQSClient } from '@aws-sdk/client-sqs';
import { createMirrorApp, type MirrorApp } from '../shared/core/app.ts';
import { loadConfigFile, type MirrorConfig } from '../shared/core/config.ts';
import type { MirrorJob } from '../shared/core/domain.ts';
import { WasmMirrorError } from '../shared/core/errors.ts';
import type { PipelineDeps } from '../shared/core/pipeline/context.ts';
import {
  type Clock,
  type ObjectStore,
  type PublishRequest,
  type QueueProducer,
  type RegistryObjectWriter,
  type SecretSource,
  type Signer,
  systemClock,
  type WasmPuller,
} from '../shared/core/ports.ts';
import { S3ObjectStore } from './adapters/s3-object-store.ts';
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

/** What a function's own composition root adds to the shared part. */
export interface RolePorts {
  mirrorQueue?: QueueProducer<MirrorJob>;
  publishQueue?: QueueProducer<PublishRequest>;
  puller?: WasmPuller;
  signerFor?: (keyId: string) => Signer;
  secrets?: SecretSource;
  registryCredentials?: PipelineDeps['registryCredentials'];
  /** Writes the registry view CloudFront serves at `/v2/` (the publish function's alone). */
  registry?: (bucket: { client: S3Client; name: string }) => RegistryObjectWriter;
}

export interface RoleContext {
  env: Readonly<FunctionEnv>;
  config: MirrorConfig;
  /** Region and endpoint for every AWS client (the endpoint only when pointed at emulators). */
  clientConfig: { region?: string; endpoint?: string };
  /** Wraps a client so each call shows as an X-Ray subsegment. */
  traced<T>(client: T): T;
}

export async function composeRuntime(
  env: Readonly<FunctionEnv>,
  overrides: RuntimeOverrides,
  role: (context: RoleContext) => RolePorts,
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
  const context: RoleContext = {
    env,
    config,
    clientConfig: {
      ...(env.region ? { region: env.region } : {}),
      ...(env.endpointUrl ? { endpoint: env.endpointUrl } : {}),
    },
    traced: (client) => powertools.tracer.captureAWSv3Client(client),
  };
  const ports = role(context);
  // Every function with a role reads or writes the bucket.
  const s3 =
    overrides.s3 ??
    context.traced(new S3Client({ ...context.clientConfig, forcePathStyle: env.s3ForcePathStyle }));
  const store: ObjectStore = new S3ObjectStore({ bucket: env.bucketName, client: s3 });
  const signerFor = ports.signerFor ?? (() => unavailableSigner(env));
  const deps: PipelineDeps = {
    config,
    store,
    mirrorQueue: ports.mirrorQueue ?? unavailableQueue('mirror queue', env),
    publishQueue: ports.publishQueue ?? unavailableQueue('publish queue', env),
    puller: ports.puller ?? unavailablePuller(env),
    signer: env.signingKeyId && ports.signerFor ? ports.signerFor(env.signingKeyId) : unavailableSigner(env),
    secrets: ports.secrets ?? unavailableSecrets(env),
    clock: overrides.clock ?? systemClock,
    logger: powertoolsLogger(powertools.logger),
    metrics: powertoolsMetrics(powertools.metrics),
    scratchDir: env.scratchDir,
    ...(ports.registryCredentials ? { registryCredentials: ports.registryCredentials } : {}),
    ...(ports.registry ? { registry: ports.registry({ client: s3, name: env.bucketName }) } : {}),
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
  return { send: () => Promise.reject(notWired(what, env)) };
}

function unavailableSigner(env: Readonly<FunctionEnv>): Signer {
  const fail = () => Promise.reject(notWired('signing key', env));
  return { publicKeySpki: fail, keyId: fail, sign: fail };
}

function unavailablePuller(env: Readonly<FunctionEnv>): WasmPuller {
  const fail = () => Promise.reject(notWired('registry client', env));
  return { pullToFile: fail, resolveDigest: fail, listTags: fail };
}

function unavailableSecrets(env: Readonly<FunctionEnv>): SecretSource {
  return { get: () => Promise.reject(notWired('secrets', env)) };
}
