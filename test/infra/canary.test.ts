/**
 * The canary handler against a mirror served from node:http on 127.0.0.1: keys.json as the
 * publisher writes it, manifests/v2/index.json and v1's manifests/latest.json signed like the
 * publisher signs them (gzip-encoded as CloudFront compresses them), or only latest.json as a
 * mirror that has not published v2 yet serves it. It publishes the served manifest's age as EMF through the same
 * Powertools middleware as every function, and throws (publishing nothing) when what agents
 * would get cannot be verified.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';
import type { Context, ScheduledEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type CanaryOptions,
  type CanaryResult,
  createCanaryCheck,
  loadCanaryEnv,
} from '../../functions/handlers/canary.ts';
import { withPowertools } from '../../functions/handlers/middleware.ts';
import {
  buildTree,
  INDEX_PAYLOAD_TYPE,
  INDEX_TYPE,
  signManifest,
  signPayload,
  spkiToPem,
  validateIndexPayload,
} from '../../shared/core/manifest/index.ts';
import { moduleEntry, newSigner, payloadOf, T0 } from '../manifest/helpers.ts';

interface Served {
  status: number;
  body: Uint8Array;
  headers?: Record<string, string>;
  gzip?: boolean;
  /** Never answer (a stalled edge). */
  hang?: boolean;
}

const served = new Map<string, Served>();
let server: Server;
let mirrorUrl: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const entry = served.get(req.url ?? '') ?? { status: 404, body: new Uint8Array() };
    if (entry.hang) return;
    const gzip = entry.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding']));
    const body = gzip ? gzipSync(entry.body) : entry.body;
    res.writeHead(entry.status, {
      'content-type': 'application/json',
      'content-length': body.byteLength,
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
      ...entry.headers,
    });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  mirrorUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

const signer = newSigner();
const otherSigner = newSigner();

/** keys.json in the publisher's form: the mirror's name and each key's id and PEM. */
async function keysJson(...signers: (typeof signer)[]): Promise<Uint8Array> {
  const keys = [];
  for (const s of signers)
    keys.push({ keyid: await s.keyId(), publicKey: spkiToPem(await s.publicKeySpki()) });
  return new TextEncoder().encode(`${JSON.stringify({ mirror: 'prod-mesh', keys }, null, 2)}\n`);
}

/**
 * A mirror as CloudFront serves it: v2's index (version 8) and v1's latest.json (version 7, so a
 * result names which one was read), or with `v1Only` no index at all, answered 403 as S3 answers
 * CloudFront for a key it does not hold.
 */
async function serveMirror(
  options: { signWith?: typeof signer; mirror?: string; keys?: Uint8Array; v1Only?: boolean } = {},
) {
  const modules = [moduleEntry('ghcr.io/acme/basic-auth', new Uint8Array([0, 97, 115, 109]))];
  const payload = payloadOf(modules, {
    version: 7,
    issuedAt: T0,
    ...(options.mirror ? { mirror: options.mirror } : {}),
  });
  const signed = await signManifest(payload, options.signWith ?? signer);
  const tree = buildTree(modules, 1);
  const index = await signPayload(
    INDEX_PAYLOAD_TYPE,
    validateIndexPayload({
      type: INDEX_TYPE,
      mirror: payload.mirror,
      version: 8,
      issuedAt: payload.issuedAt,
      expiresAt: payload.expiresAt,
      entries: tree.entries,
      depth: 1,
      root: tree.root,
    }),
    options.signWith ?? signer,
  );
  served.clear();
  served.set('/v2/', {
    status: 200,
    body: new TextEncoder().encode('{}'),
    headers: { 'docker-distribution-api-version': 'registry/2.0' },
  });
  served.set('/keys.json', { status: 200, body: options.keys ?? (await keysJson(signer)), gzip: true });
  served.set('/manifests/latest.json', { status: 200, body: signed.bytes, gzip: true });
  served.set(
    '/manifests/v2/index.json',
    options.v1Only
      ? { status: 403, body: new TextEncoder().encode('<Error><Code>AccessDenied</Code></Error>') }
      : { status: 200, body: index.bytes, gzip: true },
  );
}

const context = {
  functionName: 'canary',
  awsRequestId: 'req-1',
  getRemainingTimeInMillis: () => 30_000,
} as Context;
const event = { source: 'aws.events', 'detail-type': 'Scheduled Event' } as ScheduledEvent;

/** The handler as the entry point builds it, and the EMF lines it wrote. */
async function runCanary(
  now: Date,
  options: Omit<CanaryOptions, 'now'> = {},
): Promise<{ result?: CanaryResult; error?: Error; emf: Emf[] }> {
  const env = loadCanaryEnv({
    WASM_MIRROR_CANARY_URL: mirrorUrl,
    WASM_MIRROR_MIRROR_NAME: 'prod-mesh',
    WASM_MIRROR_METRICS_NAMESPACE: 'WasmMirror',
    POWERTOOLS_SERVICE_NAME: 'wasm-mirror',
    POWERTOOLS_LOG_LEVEL: 'SILENT',
  });
  const logger = new Logger({ serviceName: env.serviceName, logLevel: env.logLevel });
  const powertools = {
    logger,
    metrics: new Metrics({
      namespace: env.metricsNamespace,
      serviceName: env.serviceName,
      defaultDimensions: { mirror: env.mirrorName },
      logger,
    }),
    tracer: new Tracer({ serviceName: env.serviceName, enabled: false }),
  };
  const handler = withPowertools(
    createCanaryCheck(env, powertools, { ...options, now: () => now }),
    powertools,
  );
  const written: string[] = [];
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: unknown) => {
    written.push(String(chunk));
    return true;
  });
  try {
    const result = await handler(event, context);
    return { result, emf: emfOf(written) };
  } catch (error) {
    return { error: error as Error, emf: emfOf(written) };
  } finally {
    spy.mockRestore();
  }
}

/** One CloudWatch embedded-metric-format line: the directive plus metric and dimension values. */
interface Emf {
  _aws: {
    CloudWatchMetrics: {
      Namespace: string;
      Dimensions: string[][];
      Metrics: { Name: string; Unit: string }[];
    }[];
  };
  [field: string]: unknown;
}

function emfOf(lines: string[]): Emf[] {
  return lines
    .flatMap((l) => l.split('\n'))
    .filter((l) => l.includes('"_aws"'))
    .map((l) => JSON.parse(l) as Emf);
}

const servedAge = (emf: Emf[]) => emf.filter((e) => 'served_manifest_age_seconds' in e);

describe('the canary', () => {
  it('verifies the served v2 index with the served keys and publishes its age', async () => {
    await serveMirror();
    const { result, error, emf } = await runCanary(new Date(T0.getTime() + 90_000));
    expect(error).toBeUndefined();
    expect(result).toEqual({
      path: 'manifests/v2/index.json',
      version: 8,
      ageSeconds: 90,
      keyid: await signer.keyId(),
    });
    const [line, ...more] = servedAge(emf);
    expect(more).toEqual([]);
    expect(line).toMatchObject({
      served_manifest_age_seconds: 90,
      mirror: 'prod-mesh',
      service: 'wasm-mirror',
    });
    const directive = line!._aws.CloudWatchMetrics[0]!;
    expect(directive.Namespace).toBe('WasmMirror');
    expect(directive.Dimensions[0]!.sort()).toEqual(['mirror', 'service']);
    expect(directive.Metrics).toContainEqual({ Name: 'served_manifest_age_seconds', Unit: 'Seconds' });
  });

  it('reads v1 latest.json on a mirror that has not published a v2 index yet', async () => {
    await serveMirror({ v1Only: true });
    const { result, error, emf } = await runCanary(new Date(T0.getTime() + 60_000));
    expect(error).toBeUndefined();
    expect(result).toMatchObject({ path: 'manifests/latest.json', version: 7, ageSeconds: 60 });
    expect(servedAge(emf)).toHaveLength(1);
  });

  it('does not fall back to v1 when the served index fails or cannot be fetched', async () => {
    await serveMirror();
    served.set('/manifests/v2/index.json', {
      status: 200,
      body: new TextEncoder().encode('{"not":"signed"}'),
    });
    const bad = await runCanary(new Date(T0.getTime() + 1000));
    expect(bad.error).toMatchObject({ code: 'ENVELOPE_MALFORMED' });
    expect(servedAge(bad.emf)).toEqual([]);

    served.set('/manifests/v2/index.json', { status: 503, body: new TextEncoder().encode('unavailable') });
    const down = await runCanary(new Date(T0.getTime() + 1000));
    expect(down.error!.message).toContain('/manifests/v2/index.json: HTTP 503');
  });

  it('fails, publishing no age, when the manifest is signed by a key keys.json does not list', async () => {
    await serveMirror({ signWith: otherSigner });
    const { error, emf } = await runCanary(new Date(T0.getTime() + 90_000));
    expect(error).toMatchObject({ code: 'UNKNOWN_KEY' });
    expect(servedAge(emf)).toEqual([]);
  });

  it('fails on a manifest for another mirror, and on an expired one', async () => {
    await serveMirror({ mirror: 'staging-mesh' });
    expect((await runCanary(new Date(T0.getTime() + 1000))).error).toMatchObject({ code: 'WRONG_MIRROR' });

    await serveMirror();
    const late = await runCanary(new Date(T0.getTime() + 49 * 3600_000));
    expect(late.error).toMatchObject({ code: 'MANIFEST_EXPIRED' });
    expect(servedAge(late.emf)).toEqual([]);
  });

  it('fails, publishing no age, when CloudFront does not answer /v2/ as a registry', async () => {
    // Prepare: the default behaviour's 404, as when the /v2* behaviour or its function is missing.
    await serveMirror();
    served.set('/v2/', { status: 404, body: new Uint8Array() });
    // Act
    const missing = await runCanary(new Date(T0.getTime() + 1000));
    served.set('/v2/', { status: 200, body: new TextEncoder().encode('{}') });
    const noVersion = await runCanary(new Date(T0.getTime() + 1000));
    // Assess
    expect(missing.error).toMatchObject({ code: 'MIRROR_UNAVAILABLE' });
    expect(missing.error!.message).toContain('/v2/: HTTP 404');
    expect(noVersion.error!.message).toContain('Docker-Distribution-API-Version absent');
    expect(servedAge([...missing.emf, ...noVersion.emf])).toEqual([]);
  });

  it('fails when CloudFront does not serve latest.json or keys.json', async () => {
    await serveMirror({ v1Only: true });
    served.set('/manifests/latest.json', { status: 503, body: new TextEncoder().encode('unavailable') });
    const down = await runCanary(new Date(T0.getTime() + 1000));
    expect(down.error).toMatchObject({ code: 'MIRROR_UNAVAILABLE' });
    expect(down.error!.message).toContain('/manifests/latest.json: HTTP 503');

    await serveMirror();
    served.delete('/keys.json');
    expect((await runCanary(new Date(T0.getTime() + 1000))).error!.message).toContain('/keys.json: HTTP 404');
  });

  it('refuses an oversized keys.json and gives up on an edge that never answers', async () => {
    await serveMirror({ keys: new Uint8Array(2 * 1024 * 1024).fill(32) });
    expect((await runCanary(new Date(T0.getTime() + 1000))).error!.message).toMatch(/over the cap/);

    await serveMirror();
    served.set('/manifests/v2/index.json', { status: 200, body: new Uint8Array(), hang: true });
    const stalled = await runCanary(new Date(T0.getTime() + 1000), { timeoutMs: 200 });
    expect(stalled.error).toMatchObject({ code: 'TIMEOUT' });
  });

  it('names a missing or malformed variable at start', () => {
    expect(() => loadCanaryEnv({ WASM_MIRROR_MIRROR_NAME: 'prod-mesh' })).toThrow(/WASM_MIRROR_CANARY_URL/);
    expect(() =>
      loadCanaryEnv({ WASM_MIRROR_CANARY_URL: 'https://d1.cloudfront.net/x', WASM_MIRROR_MIRROR_NAME: 'm' }),
    ).toThrow(/must be an http\(s\) origin/);
    expect(
      loadCanaryEnv({ WASM_MIRROR_CANARY_URL: 'https://d1.cloudfront.net/', WASM_MIRROR_MIRROR_NAME: 'm' }),
    ).toMatchObject({ mirrorUrl: 'https://d1.cloudfront.net', metricsNamespace: 'WasmMirror' });
  });
});
