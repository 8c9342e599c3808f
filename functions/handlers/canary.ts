/**
 * The canary: on a schedule, fetches keys.json and the signed index agents read first,
 * manifests/v2/index.json, through CloudFront the way an agent does, verifies it (signature by a
 * key keys.json lists, mirror name, time window) and publishes how old the served manifest is as
 * `served_manifest_age_seconds`. A mirror that has not published v2 yet (index.json absent) is
 * checked through its v1 manifests/latest.json instead. It also asks the registry API's base
 * (`/v2/`) and expects the registry's answer, which only the `/v2*` behaviour's function gives.
 * The publisher's own age metric says what was written; this says what agents are served. Any
 * failure throws: the invocation fails and no age is published, so both the canary's error alarm
 * and its age alarm (missing data breaches) fire.
 */
import type { Context, ScheduledEvent } from 'aws-lambda';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { readCapped } from '../../shared/core/io.ts';
import {
  DEFAULT_MAX_MANIFEST_BYTES,
  loadTrustedKeys,
  MAX_INDEX_BYTES,
  v2Keys,
  verifyIndex,
  verifyManifest,
} from '../../shared/core/manifest/index.ts';
import { storageKeys } from '../../shared/core/storage-keys.ts';
import { ENV } from '../config.ts';
import type { Powertools } from '../runtime.ts';

/** The canary's environment; the CDK app sets these. */
export const CANARY_ENV = {
  mirrorUrl: 'WASM_MIRROR_CANARY_URL',
  mirrorName: 'WASM_MIRROR_MIRROR_NAME',
} as const;

export const SERVED_MANIFEST_AGE_METRIC = 'served_manifest_age_seconds';

const MAX_KEYS_JSON_BYTES = 1024 * 1024;

const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'SILENT'] as const;

export interface CanaryEnv {
  /** https://<distribution>, no trailing slash. */
  mirrorUrl: string;
  /** The manifest's `mirror` must equal this, as agents pin it. */
  mirrorName: string;
  metricsNamespace: string;
  serviceName: string;
  logLevel: (typeof LOG_LEVELS)[number];
}

/** The canary's variables, parsed once per container; a missing or malformed one names itself. */
export function loadCanaryEnv(env: Readonly<Record<string, string | undefined>>): Readonly<CanaryEnv> {
  const get = (name: string): string | undefined => env[name]?.trim() || undefined;
  const required = (name: string): string => {
    const value = get(name);
    if (value === undefined) {
      throw new WasmMirrorError('CONFIG_INVALID', `environment variable ${name} is required by the canary`);
    }
    return value;
  };
  const mirrorUrl = required(CANARY_ENV.mirrorUrl).replace(/\/+$/, '');
  if (!/^https?:\/\/[^/]+$/.test(mirrorUrl)) {
    throw new WasmMirrorError('CONFIG_INVALID', `${CANARY_ENV.mirrorUrl} must be an http(s) origin`);
  }
  const logLevel = (get('POWERTOOLS_LOG_LEVEL') ?? 'INFO').toUpperCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new WasmMirrorError(
      'CONFIG_INVALID',
      `POWERTOOLS_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`,
    );
  }
  return Object.freeze({
    mirrorUrl,
    mirrorName: required(CANARY_ENV.mirrorName),
    metricsNamespace: get(ENV.metricsNamespace) ?? 'WasmMirror',
    serviceName: get('POWERTOOLS_SERVICE_NAME') ?? 'wasm-mirror',
    logLevel: logLevel as CanaryEnv['logLevel'],
  });
}

export interface CanaryOptions {
  /** @default the global fetch */
  fetch?: typeof fetch;
  /** @default the system clock */
  now?: () => Date;
  /** Each request, body included, must finish within this. @default 10 s */
  timeoutMs?: number;
}

export interface CanaryResult {
  /** The document checked: the v2 index, or v1's latest.json on a mirror without one. */
  path: string;
  version: number;
  ageSeconds: number;
  keyid: string;
}

/**
 * What CloudFront answers for an object the bucket does not hold: 403 from S3 behind origin
 * access control (no ListBucket), 404 where the origin says so.
 */
const ABSENT = new Set([403, 404]);

/**
 * One canary run. The entry point wraps it in the Powertools middleware like every handler (the
 * metric is flushed as EMF at the end of the invocation); it is not wrapped here so the CDK app
 * can read CANARY_ENV without loading the runtime libraries.
 */
export function createCanaryCheck(
  env: CanaryEnv,
  powertools: Pick<Powertools, 'logger' | 'metrics'>,
  options: CanaryOptions = {},
): (event: ScheduledEvent, context: Context) => Promise<CanaryResult> {
  const fetchUrl = options.fetch ?? fetch;
  const now = options.now ?? (() => new Date());
  const timeoutMs = options.timeoutMs ?? 10_000;
  const { logger, metrics } = powertools;

  /** The body, or undefined for an absent object when `absentOk`. */
  async function get(path: string, maxBytes: number): Promise<Uint8Array>;
  async function get(path: string, maxBytes: number, absentOk: true): Promise<Uint8Array | undefined>;
  async function get(path: string, maxBytes: number, absentOk = false): Promise<Uint8Array | undefined> {
    const url = `${env.mirrorUrl}/${path}`;
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      const res = await fetchUrl(url, { signal: deadline });
      if (absentOk && ABSENT.has(res.status)) {
        await res.body?.cancel();
        return undefined;
      }
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new WasmMirrorError('MIRROR_UNAVAILABLE', `${url}: HTTP ${res.status}`);
      }
      const declared = Number(res.headers.get('content-length'));
      return await readCapped(
        chunks(res.body),
        maxBytes,
        (n) => new WasmMirrorError('MIRROR_UNAVAILABLE', `${url}: ${n} bytes is over the cap of ${maxBytes}`),
        Number.isFinite(declared) && declared > 0 ? declared : undefined,
      );
    } catch (err) {
      if (deadline.aborted) {
        throw new WasmMirrorError('TIMEOUT', `${url}: no complete answer within ${timeoutMs} ms`, {
          cause: err,
        });
      }
      throw err;
    }
  }

  /** `/v2/` as a registry answers it: 200 and the API version, so `oci://` clients can pull. */
  async function checkRegistryApi(): Promise<void> {
    const url = `${env.mirrorUrl}/v2/`;
    const deadline = AbortSignal.timeout(timeoutMs);
    const res = await fetchUrl(url, { signal: deadline }).catch((err: unknown) => {
      throw new WasmMirrorError('MIRROR_UNAVAILABLE', `${url}: ${(err as Error).message}`, { cause: err });
    });
    await res.body?.cancel();
    const version = res.headers.get('docker-distribution-api-version');
    if (res.status !== 200 || version !== 'registry/2.0') {
      throw new WasmMirrorError(
        'MIRROR_UNAVAILABLE',
        `${url}: HTTP ${res.status}, Docker-Distribution-API-Version ${version ?? 'absent'}; the registry API is not served`,
      );
    }
  }

  return async () => {
    await checkRegistryApi();
    const trustedKeys = loadTrustedKeys(
      new TextDecoder().decode(await get(storageKeys.keys, MAX_KEYS_JSON_BYTES)),
    );
    // An index that is served but does not verify fails the run; only its absence falls back.
    const index = await get(v2Keys.index, MAX_INDEX_BYTES, true);
    const path = index === undefined ? storageKeys.latestManifest : v2Keys.index;
    const bytes = index ?? (await get(storageKeys.latestManifest, DEFAULT_MAX_MANIFEST_BYTES));
    const at = now();
    const options = { trustedKeys, mirrorName: env.mirrorName, now: at };
    const verified = index === undefined ? verifyManifest(bytes, options) : verifyIndex(bytes, options);
    const { version, issuedAt, expiresAt } = verified.payload;
    const ageSeconds = Math.max(0, Math.round((at.getTime() - Date.parse(issuedAt)) / 1000));
    metrics.addMetric(SERVED_MANIFEST_AGE_METRIC, 'Seconds', ageSeconds);
    logger.info('served manifest verified', {
      path,
      version,
      issuedAt,
      expiresAt,
      ageSeconds,
      keyid: verified.keyid,
    });
    return { path, version, ageSeconds, keyid: verified.keyid };
  };
}

async function* chunks(body: ReadableStream<Uint8Array> | null): AsyncGenerator<Uint8Array> {
  if (body === null) return;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    // A body left over the cap is not read on.
    await reader.cancel().catch(() => {});
  }
}
