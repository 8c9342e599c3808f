/**
 * Pull credentials for Amazon ECR registries from the function's own IAM role: ECR's
 * authorization token is Basic credentials (`AWS:<password>`) valid for 12 hours, cached until
 * shortly before it expires. Sources that name credentials in the config never get here.
 */
import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type { RegistryCredentials } from '../../shared/core/ports.ts';
import type { SourceConfig } from '../../shared/core/sources/types.ts';
import { ecrRegistry } from './ecr-host.ts';

export { ecrRegistry };

const REFRESH_BEFORE_MS = 15 * 60_000;

export interface EcrCredentialsOptions {
  /** Client for a region; injected in tests. @default new ECRClient({ region }) */
  clientFor?: (region: string) => Pick<ECRClient, 'send'>;
  now?: () => number;
}

export class EcrCredentials {
  readonly #clientFor: (region: string) => Pick<ECRClient, 'send'>;
  readonly #now: () => number;
  readonly #clients = new Map<string, Pick<ECRClient, 'send'>>();
  readonly #cache = new Map<string, { credentials: RegistryCredentials; expiresAt: number }>();

  constructor(options: EcrCredentialsOptions = {}) {
    this.#clientFor = options.clientFor ?? ((region) => new ECRClient({ region }));
    this.#now = options.now ?? Date.now;
  }

  /** Credentials for an ECR source's registry; undefined for any other registry. */
  async forSource(source: SourceConfig): Promise<RegistryCredentials | undefined> {
    const ecr = ecrRegistry(source.registry);
    if (ecr === undefined) return undefined;
    const cached = this.#cache.get(source.registry);
    if (cached !== undefined && cached.expiresAt - REFRESH_BEFORE_MS > this.#now()) return cached.credentials;
    let client = this.#clients.get(ecr.region);
    if (client === undefined) {
      client = this.#clientFor(ecr.region);
      this.#clients.set(ecr.region, client);
    }
    let data: { authorizationToken?: string; expiresAt?: Date } | undefined;
    try {
      const out = await client.send(new GetAuthorizationTokenCommand({}));
      data = out.authorizationData?.[0];
    } catch (err) {
      throw new WasmMirrorError('UNAUTHORIZED', `ECR GetAuthorizationToken failed in ${ecr.region}`, {
        cause: err,
        retryable: true,
      });
    }
    const decoded = Buffer.from(data?.authorizationToken ?? '', 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) throw new WasmMirrorError('UNAUTHORIZED', 'ECR returned no usable authorization token');
    const credentials = { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
    this.#cache.set(source.registry, {
      credentials,
      expiresAt: data?.expiresAt?.getTime() ?? this.#now() + 3600_000,
    });
    return credentials;
  }
}
