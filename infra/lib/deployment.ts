/**
 * The deployment's input: the mirror config file (DESIGN.md) plus a few context switches. Read
 * once in the app and passed down as readonly props.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Aws } from 'aws-cdk-lib';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';

export const EXAMPLE_CONFIG = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'example.config.yaml');

export interface Deployment {
  /** Absolute path of the config file, bundled beside every function. */
  configPath: string;
  config: MirrorConfig;
  /** Mirror-function concurrency: SQS event source maximum and (unless disabled) reserved concurrency. */
  mirrorConcurrency: number;
  /** Reserve the mirror function's concurrency; accounts with a low concurrency quota turn this off. */
  reserveConcurrency: boolean;
  /** Signing keys 1..N exist (rotation adds one); all stay, retained and listed in keys.json. */
  signingKeyGeneration: number;
  /** The key the publisher signs with; defaults to the newest. One below it while agents learn the new key. */
  activeSigningKeyGeneration: number;
  /** SNS topic every alarm notifies, when given. */
  alarmTopicArn: string | undefined;
}

export interface DeploymentContext {
  tryGetContext(key: string): unknown;
}

export function loadDeployment(node: DeploymentContext): Deployment {
  const configArg = node.tryGetContext('config');
  const configPath = typeof configArg === 'string' && configArg !== '' ? resolve(configArg) : EXAMPLE_CONFIG;
  const config = parseConfig(readFileSync(configPath, 'utf8'), configPath);
  const generation = intContext(node, 'signingKeyGeneration', 1, 1, 20);
  return {
    configPath,
    config,
    mirrorConcurrency: intContext(node, 'mirrorConcurrency', 5, 2, 1000),
    reserveConcurrency: String(node.tryGetContext('reserveConcurrency') ?? 'true') !== 'false',
    signingKeyGeneration: generation,
    activeSigningKeyGeneration: intContext(node, 'activeSigningKeyGeneration', generation, 1, generation),
    alarmTopicArn: stringContext(node, 'alarmTopicArn'),
  };
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
    throw new Error(`context ${key} must be an integer from ${min} to ${max}, got ${String(raw)}`);
  }
  return value;
}

function stringContext(node: DeploymentContext, key: string): string | undefined {
  const raw = node.tryGetContext(key);
  return typeof raw === 'string' && raw !== '' ? raw : undefined;
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
