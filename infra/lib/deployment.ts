/**
 * The deployment's input: the mirror config file (docs/config.md) plus a few context switches. Read
 * once in the app and passed down as readonly props. Every refusal is a DeploymentError: one line
 * naming the key at fault, printed by infra/bin/app.ts without a stack trace.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aws } from 'aws-cdk-lib';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';

export const EXAMPLE_CONFIG = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'example.config.yaml');

/** The CloudWatch namespace the functions publish EMF metrics under; alarms and the dashboard read it. */
export const METRICS_NAMESPACE = 'WasmMirror';

/** A refusal of the deployment's input, in one line that names the key at fault. */
export class DeploymentError extends Error {
  override readonly name = 'DeploymentError';
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, ' '));
  }
}

export interface Deployment {
  /** Absolute path of the config file, bundled beside every function. */
  configPath: string;
  config: MirrorConfig;
  /** At most this many mirror functions run at once: the SQS event source's maximum concurrency. */
  mirrorConcurrency: number;
  /** Concurrency reserved for the mirror function, only when asked for; none by default. */
  reservedConcurrency: number | undefined;
  /** Signing keys 1..N exist (rotation adds one); all stay, retained and listed in keys.json. */
  signingKeyGeneration: number;
  /** The key the publisher signs with; defaults to the newest. One below it while agents learn the new key. */
  activeSigningKeyGeneration: number;
  /** An existing SNS topic every alarm notifies instead of the one the pipeline creates. */
  alarmTopicArn: string | undefined;
  /** Subscribed by email to the pipeline's alarm topic. */
  alarmEmail: string | undefined;
  /** CloudFront standard logs to the access-log bucket (switched off in opt-in regions regardless). */
  cloudFrontLogging: boolean;
  /** EMF namespace of the functions' metrics. */
  metricsNamespace: string;
}

export interface DeploymentContext {
  tryGetContext(key: string): unknown;
}

const NO_CONFIG =
  'no mirror config given: pass one with `-c config=wasm-mirror.config.yaml` (infra/example.config.yaml shows the format)';

export function loadDeployment(node: DeploymentContext): Deployment {
  const configArg = node.tryGetContext('config');
  // The example names made-up registries and would create secrets for them: never a silent default.
  if (typeof configArg !== 'string' || configArg.trim() === '') throw new DeploymentError(NO_CONFIG);
  const configPath = resolve(configArg);
  const shown = relative(process.cwd(), configPath) || configPath;
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (err) {
    throw new DeploymentError(`cannot read config file ${shown} (-c config): ${(err as Error).message}`);
  }
  let config: MirrorConfig;
  try {
    config = parseConfig(text, shown);
  } catch (err) {
    if (err instanceof WasmMirrorError) throw new DeploymentError(err.message);
    throw err;
  }
  refuseLocalSources(config, shown);
  if (config.mirror.publishIntervalMs > MAX_PUBLISH_INTERVAL_MS) {
    throw new DeploymentError(
      `${shown}: mirror.publishInterval is ${config.mirror.publishIntervalMs / 1000}s; the publish function waits it out within its 1-minute timeout, so at most ${MAX_PUBLISH_INTERVAL_MS / 1000}s in AWS`,
    );
  }
  const generation = intContext(node, 'signingKeyGeneration', 1, 1, 20);
  const mirrorConcurrency = intContext(node, 'mirrorConcurrency', 5, 2, 1000);
  return {
    configPath,
    config,
    mirrorConcurrency,
    reservedConcurrency: reservedContext(node, mirrorConcurrency),
    signingKeyGeneration: generation,
    activeSigningKeyGeneration: intContext(node, 'activeSigningKeyGeneration', generation, 1, generation),
    alarmTopicArn: stringContext(
      node,
      'alarmTopicArn',
      /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]{1,256}$/,
    ),
    alarmEmail: stringContext(node, 'alarmEmail', /^[^@\s]+@[^@\s]+\.[^@\s]+$/),
    cloudFrontLogging: boolContext(node, 'cloudFrontLogging', true),
    metricsNamespace: METRICS_NAMESPACE,
  };
}

/**
 * The longest coalescing wait a publish can afford: it sleeps before signing, inside the publish
 * function's one minute, which keeps 15 s back for handing requests back.
 */
const MAX_PUBLISH_INTERVAL_MS = 30_000;

/**
 * Lambda cannot reach this machine, and the embedded runtime's plain-HTTP pulls are for registries
 * on it: in AWS every pull goes over HTTPS to a registry reachable from the internet or a VPC.
 */
function refuseLocalSources(config: MirrorConfig, origin: string): void {
  config.sources.forEach((source, i) => {
    if (source.insecure) {
      throw new DeploymentError(
        `${origin}: sources[${i}].insecure is true; the AWS pipeline pulls over HTTPS only (insecure is for registries on your own machine)`,
      );
    }
    if (isLoopback(source.registry)) {
      throw new DeploymentError(
        `${origin}: sources[${i}].registry ${source.registry} is a loopback address, which Lambda cannot reach; name a registry host reachable from AWS`,
      );
    }
  });
}

function isLoopback(registry: string): boolean {
  const host = registry
    .toLowerCase()
    .replace(/:\d+$/, '')
    .replace(/^\[(.*)\]$/, '$1');
  return (
    host === 'localhost' ||
    host.endsWith('.localhost') ||
    /^127\.\d+\.\d+\.\d+$/.test(host) ||
    host === '0.0.0.0' ||
    host === '::1' ||
    host === '::' ||
    /^::ffff:127\./.test(host)
  );
}

function intContext(
  node: DeploymentContext,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = node.tryGetContext(key);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new DeploymentError(`-c ${key} must be an integer from ${min} to ${max}, got ${String(raw)}`);
  }
  return value;
}

/**
 * `-c reserveConcurrency=N` reserves N; `true` reserves the event source's maximum. Accounts often
 * start with a concurrency quota of 10, where any reservation fails the deploy, so none by default.
 */
function reservedContext(node: DeploymentContext, mirrorConcurrency: number): number | undefined {
  const raw = node.tryGetContext('reserveConcurrency');
  if (raw === undefined || raw === false || raw === 'false' || raw === '') return undefined;
  if (raw === true || raw === 'true') return mirrorConcurrency;
  const reserved = intContext(node, 'reserveConcurrency', 0, 1, 1000);
  if (reserved < mirrorConcurrency) {
    // The event source would start more functions than may run, and the rest would be throttled.
    throw new DeploymentError(
      `-c reserveConcurrency=${reserved} is below -c mirrorConcurrency (${mirrorConcurrency}); reserve at least as many`,
    );
  }
  return reserved;
}

function boolContext(node: DeploymentContext, key: string, fallback: boolean): boolean {
  const raw = node.tryGetContext(key);
  if (raw === undefined) return fallback;
  if (raw === true || raw === 'true') return true;
  if (raw === false || raw === 'false') return false;
  throw new DeploymentError(`-c ${key} must be true or false, got ${String(raw)}`);
}

function stringContext(node: DeploymentContext, key: string, pattern: RegExp): string | undefined {
  const raw = node.tryGetContext(key);
  if (raw === undefined || raw === '') return undefined;
  if (typeof raw !== 'string' || !pattern.test(raw)) {
    throw new DeploymentError(`-c ${key} has an invalid value ${JSON.stringify(raw)}`);
  }
  return raw;
}

/** Secret names the config refers to: webhook secrets and registry pull credentials. */
export function secretNames(config: MirrorConfig): { webhook: string[]; credentials: string[] } {
  const webhook = new Set<string>();
  const credentials = new Set<string>();
  for (const s of config.sources) {
    if (s.webhookSecretEnv) webhook.add(s.webhookSecretEnv);
    if (s.credentials) {
      credentials.add(s.credentials.usernameEnv);
      credentials.add(s.credentials.passwordEnv);
    }
  }
  for (const name of webhook) credentials.delete(name);
  return { webhook: [...webhook].sort(), credentials: [...credentials].sort() };
}

/** Secrets Manager name prefix for one mirror: `<prefix><name from the config>`. */
export const secretsPrefix = (config: MirrorConfig): string => `wasm-mirror/${config.mirror.name}/`;

/**
 * The bucket's name: fixed per mirror, account and region, so the pipeline can refer to it
 * without a cross-stack export. S3 names are at most 63 lowercase characters.
 */
export function mirrorBucketName(mirrorName: string): string {
  const slug = mirrorName
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 20);
  return `wasm-mirror-${slug || 'mirror'}-${Aws.ACCOUNT_ID}-${Aws.REGION}`;
}

/**
 * The publish function's name, fixed per mirror (Lambda names are per account and region): the
 * storage stack, deployed first, names this function in the signer role's policy before the
 * function exists. Mirror names may hold dots and run to 128 characters; those get a slug and a
 * hash so two mirrors never share the name.
 */
export function publishFunctionName(mirrorName: string): string {
  const slug = mirrorName.replace(/[^A-Za-z0-9_-]/g, '-');
  const base =
    slug === mirrorName && slug.length <= 32
      ? slug
      : `${slug.slice(0, 23)}-${createHash('sha256').update(mirrorName).digest('hex').slice(0, 8)}`;
  return `wasm-mirror-${base}-publish`;
}
