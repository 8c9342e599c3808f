/**
 * SecretSource on Secrets Manager through Powertools Parameters, which caches values per container
 * (default five minutes) so a burst of webhooks costs one GetSecretValue, and a rotated secret is
 * picked up without a redeploy.
 */

import { SecretsProvider } from '@aws-lambda-powertools/parameters/secrets';
import type { SecretsManagerClient, SecretsManagerClientConfig } from '@aws-sdk/client-secrets-manager';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type { SecretSource } from '../../shared/core/ports.ts';

export interface SecretsManagerSecretSourceOptions {
  /** Prepended to the config's secret names: `<prefix><name>` is the Secrets Manager id. */
  prefix?: string;
  /** Cache lifetime in seconds. Default 300. */
  maxAgeSeconds?: number;
  client?: SecretsManagerClient;
  clientConfig?: SecretsManagerClientConfig;
  /** Injected provider (tests); built from the client otherwise. */
  provider?: Pick<SecretsProvider, 'get'>;
}

export class SecretsManagerSecretSource implements SecretSource {
  private readonly prefix: string;
  private readonly maxAge: number;
  private readonly provider: Pick<SecretsProvider, 'get'>;

  constructor(options: SecretsManagerSecretSourceOptions = {}) {
    this.prefix = options.prefix ?? '';
    this.maxAge = options.maxAgeSeconds ?? 300;
    this.provider =
      options.provider ??
      new SecretsProvider(
        options.client
          ? { awsSdkV3Client: options.client }
          : options.clientConfig
            ? { clientConfig: options.clientConfig }
            : {},
      );
  }

  async get(name: string): Promise<string | undefined> {
    const id = `${this.prefix}${name}`;
    try {
      const value = await this.provider.get(id, { maxAge: this.maxAge });
      if (value === undefined) return undefined;
      return typeof value === 'string' ? value : new TextDecoder().decode(value as Uint8Array);
    } catch (err) {
      if (isResourceNotFound(err)) return undefined;
      // The secret's value is never part of the message; only its id.
      throw new WasmMirrorError('INTERNAL', `reading secret ${id} failed`, {
        cause: err,
        retryable: true,
        details: { secretId: id },
      });
    }
  }
}

function isResourceNotFound(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e.name === 'ResourceNotFoundException') return true;
  }
  return false;
}
