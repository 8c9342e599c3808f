/**
 * Helpers for tests that drive a running mirror: read and decode the published manifest, wait
 * until it lists something, and check a signature with openssl exactly as an operator would.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DsseEnvelope, ManifestPayload } from '../../shared/core/domain.ts';

export interface FetchedManifest {
  envelope: DsseEnvelope;
  payload: ManifestPayload;
  bytes: Uint8Array;
}

export async function fetchManifest(
  mirrorUrl: string,
  path = 'manifests/latest.json',
): Promise<FetchedManifest | undefined> {
  const res = await fetch(`${mirrorUrl}/${path}`);
  if (res.status === 404) {
    await res.arrayBuffer();
    return undefined;
  }
  if (!res.ok) throw new Error(`GET ${path}: ${res.status}`);
  const bytes = new Uint8Array(await res.arrayBuffer());
  const envelope = JSON.parse(Buffer.from(bytes).toString('utf8')) as DsseEnvelope;
  const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as ManifestPayload;
  return { envelope, payload, bytes };
}

/** Polls latest.json until `done(payload)` holds; returns that manifest. */
export async function waitForManifest(
  mirrorUrl: string,
  done: (payload: ManifestPayload) => boolean,
  timeoutMs = 30_000,
): Promise<FetchedManifest> {
  const deadline = Date.now() + timeoutMs;
  let last: FetchedManifest | undefined;
  while (Date.now() < deadline) {
    try {
      last = await fetchManifest(mirrorUrl);
      if (last !== undefined && done(last.payload)) return last;
    } catch {
      // the server may be restarting
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`manifest never satisfied the condition; last: ${JSON.stringify(last?.payload ?? null)}`);
}

interface QueueDepth {
  ready: number;
  inFlight: number;
  delayed: number;
}

/**
 * Waits until the embedded mirror's queues are drained (nothing waiting, running or waiting for a
 * retry): whatever a delivery queued has been handled by then.
 */
export async function waitForQueuesSettled(mirrorUrl: string, timeoutMs = 30_000): Promise<void> {
  const idle = (d: QueueDepth) => d.ready + d.inFlight + d.delayed === 0;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { queues } = (await (await fetch(`${mirrorUrl}/status`)).json()) as {
      queues: { mirror: QueueDepth; publish: QueueDepth };
    };
    if (idle(queues.mirror) && idle(queues.publish)) return;
    if (Date.now() > deadline) throw new Error(`queues never drained: ${JSON.stringify(queues)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** DSSE v1 pre-authentication encoding, written out independently of the code under test. */
export function paeBytes(payloadType: string, payload: Uint8Array): Buffer {
  return Buffer.concat([
    Buffer.from(`DSSEv1 ${Buffer.byteLength(payloadType)} ${payloadType} ${payload.length} `),
    Buffer.from(payload),
  ]);
}

/** True when `openssl dgst -sha256 -verify` accepts the envelope's first signature with the PEM key. */
export function opensslVerifies(envelope: DsseEnvelope, publicKeyPem: string): boolean {
  const dir = mkdtempSync(join(tmpdir(), 'wm-openssl-'));
  try {
    const payload = Buffer.from(envelope.payload, 'base64');
    writeFileSync(join(dir, 'pae.bin'), paeBytes(envelope.payloadType, payload));
    writeFileSync(join(dir, 'sig.der'), Buffer.from(envelope.signatures[0]!.sig, 'base64'));
    writeFileSync(join(dir, 'pub.pem'), publicKeyPem);
    try {
      const out = execFileSync(
        'openssl',
        [
          'dgst',
          '-sha256',
          '-verify',
          join(dir, 'pub.pem'),
          '-signature',
          join(dir, 'sig.der'),
          join(dir, 'pae.bin'),
        ],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      );
      return out.trim() === 'Verified OK';
    } catch {
      return false;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A CNCF Distribution notification envelope, as registry:2 sends it. */
export function distributionEnvelope(
  events: {
    id?: string;
    action?: string;
    repository: string;
    tag?: string;
    digest: string;
    mediaType?: string;
    host: string;
  }[],
): string {
  return JSON.stringify({
    events: events.map((e, i) => ({
      id: e.id ?? `event-${i}-${Math.random().toString(36).slice(2)}`,
      timestamp: new Date().toISOString(),
      action: e.action ?? 'push',
      target: {
        mediaType: e.mediaType ?? 'application/vnd.oci.image.manifest.v1+json',
        size: 400,
        digest: e.digest,
        length: 400,
        repository: e.repository,
        url: `http://${e.host}/v2/${e.repository}/manifests/${e.digest}`,
        ...(e.tag === undefined ? {} : { tag: e.tag }),
      },
      request: { id: 'req', addr: '127.0.0.1:40000', host: e.host, method: 'PUT', useragent: 'test' },
      actor: {},
      source: { addr: 'registry:5000', instanceID: 'test-instance' },
    })),
  });
}

export const DISTRIBUTION_EVENTS_V1 = 'application/vnd.docker.distribution.events.v1+json';
