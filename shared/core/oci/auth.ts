/**
 * Registry authentication by challenge, like oras-go's auth client: a 401's WWW-Authenticate
 * decides between Basic (the configured credentials, sent to that host from then on) and Bearer
 * (a token fetched from the realm, cached per host, scope and user until it expires).
 */
import { WasmMirrorError } from '../errors.ts';
import { readCapped } from '../io.ts';
import type { RegistryCredentials } from '../ports.ts';
import { apiHost } from './reference.ts';
import { release, type Transport } from './transport.ts';

/** What authentication needs to know about a repository's registry. */
export interface AuthTarget {
  registry: string;
  /** Plain http allowed for this registry, so also for its token realm. */
  insecure: boolean;
  credentials?: RegistryCredentials;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const MAX_TOKEN_RESPONSE = 1024 * 1024;

export class RegistryAuth {
  readonly #transport: Transport;
  readonly #tokens = new Map<string, { header: string; expiresAt: number }>();
  readonly #basicHosts = new Set<string>();

  constructor(transport: Transport) {
    this.#transport = transport;
  }

  /** The Authorization header to send, when a previous challenge taught us one. */
  authorization(target: AuthTarget, scope: string): string | undefined {
    const host = apiHost(target.registry);
    if (this.#basicHosts.has(host) && target.credentials !== undefined) return basic(target.credentials);
    const cached = this.#tokens.get(tokenKey(host, scope, target.credentials));
    if (cached !== undefined && cached.expiresAt > this.#transport.now()) return cached.header;
    return undefined;
  }

  /** Answers a 401's challenge so that `authorization` has something to send next time. */
  async authenticate(
    target: AuthTarget,
    scope: string,
    header: string | null,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const host = apiHost(target.registry);
    const challenge = header === null ? undefined : parseChallenge(header);
    if (challenge?.scheme === 'basic') {
      if (target.credentials === undefined) {
        throw new WasmMirrorError('UNAUTHORIZED', `${target.registry} requires credentials (Basic)`);
      }
      this.#basicHosts.add(host);
      return;
    }
    if (challenge?.scheme !== 'bearer' || challenge.params.realm === undefined) {
      throw new WasmMirrorError('UNAUTHORIZED', `${target.registry} answered 401 without a usable challenge`);
    }
    const key = tokenKey(host, scope, target.credentials);
    this.#tokens.delete(key);
    const { token, lifetimeSeconds } = await this.#fetchToken(target, scope, challenge.params, signal);
    // Refresh a little early so a token never expires in flight.
    this.#tokens.set(key, {
      header: `Bearer ${token}`,
      expiresAt: this.#transport.now() + Math.max(1, lifetimeSeconds - 10) * 1000,
    });
  }

  async #fetchToken(
    target: AuthTarget,
    scope: string,
    params: Record<string, string>,
    signal: AbortSignal | undefined,
  ): Promise<{ token: string; lifetimeSeconds: number }> {
    let realm: URL;
    try {
      realm = new URL(params.realm ?? '');
    } catch (err) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', `invalid token realm '${params.realm}'`, { cause: err });
    }
    if (realm.protocol !== 'https:' && !(realm.protocol === 'http:' && target.insecure)) {
      throw new WasmMirrorError('INSECURE_NOT_ALLOWED', `token realm ${realm.origin} is not https`);
    }
    await this.#transport.guard(realm);
    if (params.service !== undefined) realm.searchParams.set('service', params.service);
    realm.searchParams.set('scope', scope);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (target.credentials !== undefined) headers.authorization = basic(target.credentials);
    const ex = await this.#transport.send(realm, { headers, signal, label: 'token request' });
    const { status } = ex.res;
    if (status === 401 || status === 403) {
      await release(ex);
      throw new WasmMirrorError('UNAUTHORIZED', `token server ${realm.host} refused the credentials`);
    }
    if (!ex.res.ok) {
      await release(ex);
      if (status < 500 && status !== 429) {
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `token server ${realm.host} answered ${status}`);
      }
      throw new WasmMirrorError('REGISTRY_UNAVAILABLE', `token server ${realm.host} answered ${status}`, {
        retryable: true,
      });
    }
    const bytes = await readCapped(
      this.#transport.body(ex),
      MAX_TOKEN_RESPONSE,
      () => new WasmMirrorError('REGISTRY_PROTOCOL', 'token response is too large'),
    );
    let body: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      body = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch (err) {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', 'token response is not JSON', { cause: err });
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new WasmMirrorError('REGISTRY_PROTOCOL', 'token response has neither token nor access_token');
    }
    // The spec's minimum lifetime is 60 s, which is also what a missing expires_in means.
    const lifetimeSeconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
    return { token, lifetimeSeconds };
  }
}

/** Parses the first challenge of a WWW-Authenticate header: scheme and auth-params. */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*([A-Za-z][\w-]*)\s*(.*)$/s.exec(header);
  if (m === null) return undefined;
  const params: Record<string, string> = {};
  const re = /\s*([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?/gy;
  const rest = m[2] ?? '';
  re.lastIndex = 0;
  for (let p = re.exec(rest); p !== null && p[0] !== ''; p = re.exec(rest)) {
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : (p[3] ?? '');
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

function basic(c: RegistryCredentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** Tokens differ by user as well as by scope: one user's grant must not serve another. */
function tokenKey(host: string, scope: string, credentials: RegistryCredentials | undefined): string {
  return `${host}|${scope}|${credentials?.username ?? ''}`;
}
