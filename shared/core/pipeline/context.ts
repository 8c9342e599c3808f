/**
 * What the pipeline's use cases need from the runtime. The embedded runtime and the Lambda
 * composition roots each build one of these from their own adapters.
 */
import type { MirrorConfig } from '../config.ts';
import type { MirrorJob } from '../domain.ts';
import { WasmMirrorError } from '../errors.ts';
import type {
  Clock,
  Logger,
  Metrics,
  ObjectStore,
  PublishRequest,
  QueueProducer,
  RegistryCredentials,
  RegistryObjectWriter,
  SecretSource,
  Signer,
  WasmPuller,
} from '../ports.ts';
import type { SourceConfig } from '../sources/types.ts';

export interface PipelineDeps {
  config: MirrorConfig;
  store: ObjectStore;
  mirrorQueue: QueueProducer<MirrorJob>;
  publishQueue: QueueProducer<PublishRequest>;
  puller: WasmPuller;
  signer: Signer;
  secrets: SecretSource;
  clock: Clock;
  logger: Logger;
  metrics: Metrics;
  /** A writable directory for staging module bytes (Lambda: /tmp). */
  scratchDir: string;
  /**
   * Pull credentials for a source that names none in the config, from the runtime's own identity
   * (in AWS: an ECR authorization token for ECR registries).
   */
  registryCredentials?: (source: SourceConfig) => Promise<RegistryCredentials | undefined>;
  /**
   * Where a CDN serves `/v2/` from storage (AWS), the publisher writes the registry view with
   * this after each version; without it (embedded) `/v2/` is answered from kept content.
   */
  registry?: RegistryObjectWriter;
}

/** The username and password a source names by secret, if it names any. */
export async function credentialsFromSecrets(
  source: SourceConfig,
  secrets: SecretSource | undefined,
): Promise<RegistryCredentials | undefined> {
  if (source.credentials === undefined || secrets === undefined) return undefined;
  const [username, password] = await Promise.all([
    secrets.get(source.credentials.usernameEnv),
    secrets.get(source.credentials.passwordEnv),
  ]);
  if (username === undefined || password === undefined) {
    throw new WasmMirrorError(
      'CONFIG_INVALID',
      `source '${source.id}' names credentials ${source.credentials.usernameEnv}/${source.credentials.passwordEnv}, but they are not set`,
    );
  }
  return { username, password };
}

/**
 * Pull credentials for a source: the secrets its config names, else the runtime's own identity
 * (in AWS, an ECR token), else none. Mirror and reconcile both ask here, so they never differ.
 */
export async function resolveCredentials(
  deps: Pick<PipelineDeps, 'secrets' | 'registryCredentials'>,
  source: SourceConfig,
): Promise<RegistryCredentials | undefined> {
  if (source.credentials === undefined) return deps.registryCredentials?.(source);
  return credentialsFromSecrets(source, deps.secrets);
}
