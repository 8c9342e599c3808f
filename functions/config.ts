/**
 * The functions' environment, parsed once per container into a frozen, typed object. Each
 * function names the variables it needs; a missing or malformed one fails the cold start with
 * an error that names it. Nothing else in functions/ reads process.env.
 */
import { join } from 'node:path';
import { WasmMirrorError } from '../shared/core/errors.ts';

export type FunctionRole = 'webhook' | 'mirror' | 'publish' | 'keys';

export interface FunctionEnv {
  role: FunctionRole;
  /** Bucket holding modules/, manifests/ and keys.json. */
  bucketName: string;
  mirrorQueueUrl: string | undefined;
  publishQueueUrl: string | undefined;
  /** KMS key id or ARN of the ECC_NIST_P256 signing key. */
  signingKeyId: string | undefined;
  /** Every key keys.json lists (a rotation publishes the next key before it signs). */
  publishedKeyIds: readonly string[];
  /** Secrets Manager name prefix; a config secret name `X` is the secret `<prefix>X`. */
  secretsPrefix: string;
  /** The deployment's config file, bundled beside the handler. */
  configFile: string;
  scratchDir: string;
  region: string | undefined;
  /** One endpoint for every AWS client (emulators); real endpoints when absent. */
  endpointUrl: string | undefined;
  s3ForcePathStyle: boolean;
  serviceName: string;
  metricsNamespace: string;
  logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'SILENT';
}

export const ENV = {
  bucketName: 'WASM_MIRROR_BUCKET',
  mirrorQueueUrl: 'WASM_MIRROR_MIRROR_QUEUE_URL',
  publishQueueUrl: 'WASM_MIRROR_PUBLISH_QUEUE_URL',
  signingKeyId: 'WASM_MIRROR_SIGNING_KEY_ID',
  publishedKeyIds: 'WASM_MIRROR_PUBLISHED_KEY_IDS',
  secretsPrefix: 'WASM_MIRROR_SECRETS_PREFIX',
  configFile: 'WASM_MIRROR_CONFIG_FILE',
  scratchDir: 'WASM_MIRROR_SCRATCH_DIR',
  endpointUrl: 'WASM_MIRROR_ENDPOINT_URL',
  s3ForcePathStyle: 'WASM_MIRROR_S3_FORCE_PATH_STYLE',
  metricsNamespace: 'WASM_MIRROR_METRICS_NAMESPACE',
} as const;

/** What each function cannot start without. */
const REQUIRED: Record<FunctionRole, readonly (keyof typeof ENV)[]> = {
  webhook: ['bucketName', 'mirrorQueueUrl'],
  mirror: ['bucketName', 'publishQueueUrl', 'mirrorQueueUrl'],
  publish: ['bucketName', 'signingKeyId'],
  // The keys resource queues the startup re-sign on the publish queue.
  keys: ['bucketName', 'signingKeyId', 'publishQueueUrl'],
};

/** Bundled next to the handler by the CDK app. */
export const CONFIG_FILE_NAME = 'wasm-mirror.config.yaml';

const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'SILENT'] as const;

export function loadFunctionEnv(
  role: FunctionRole,
  env: Readonly<Record<string, string | undefined>> = process.env,
): Readonly<FunctionEnv> {
  const get = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? undefined : value;
  };
  for (const key of REQUIRED[role]) {
    if (get(ENV[key]) === undefined) {
      throw new WasmMirrorError(
        'CONFIG_INVALID',
        `environment variable ${ENV[key]} is required by the ${role} function`,
      );
    }
  }
  const endpointUrl = get(ENV.endpointUrl);
  if (endpointUrl !== undefined && !/^https?:\/\/[^/]+\/?$/.test(endpointUrl)) {
    throw new WasmMirrorError(
      'CONFIG_INVALID',
      `${ENV.endpointUrl} must be an http(s) origin, got ${endpointUrl}`,
    );
  }
  const pathStyle = get(ENV.s3ForcePathStyle) ?? 'false';
  if (pathStyle !== 'true' && pathStyle !== 'false') {
    throw new WasmMirrorError('CONFIG_INVALID', `${ENV.s3ForcePathStyle} must be true or false`);
  }
  const logLevel = (get('POWERTOOLS_LOG_LEVEL') ?? 'INFO').toUpperCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new WasmMirrorError(
      'CONFIG_INVALID',
      `POWERTOOLS_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`,
    );
  }
  const taskRoot = get('LAMBDA_TASK_ROOT') ?? process.cwd();
  return Object.freeze({
    role,
    bucketName: get(ENV.bucketName)!,
    mirrorQueueUrl: get(ENV.mirrorQueueUrl),
    publishQueueUrl: get(ENV.publishQueueUrl),
    signingKeyId: get(ENV.signingKeyId),
    publishedKeyIds: Object.freeze(
      (get(ENV.publishedKeyIds) ?? get(ENV.signingKeyId) ?? '')
        .split(',')
        .flatMap((k) => (k.trim() ? [k.trim()] : [])),
    ),
    secretsPrefix: get(ENV.secretsPrefix) ?? '',
    configFile: get(ENV.configFile) ?? join(taskRoot, CONFIG_FILE_NAME),
    scratchDir: get(ENV.scratchDir) ?? '/tmp',
    region: get('AWS_REGION'),
    endpointUrl,
    s3ForcePathStyle: pathStyle === 'true',
    serviceName: get('POWERTOOLS_SERVICE_NAME') ?? 'wasm-mirror',
    metricsNamespace: get(ENV.metricsNamespace) ?? get('POWERTOOLS_METRICS_NAMESPACE') ?? 'WasmMirror',
    logLevel: logLevel as FunctionEnv['logLevel'],
  });
}
