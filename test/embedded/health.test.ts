/**
 * `/healthz` says whether the mirror serves what agents can use: 503 with the reason once the
 * newest manifest has expired or is missing after start-up, 200 otherwise.
 */
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { defaultConfig } from '../../shared/core/config.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { type EmbeddedMirror, manifestHealth, startEmbedded } from '../../shared/embedded/runtime.ts';
import { waitForManifest } from '../support/mirror.ts';

describe('/healthz of the embedded mirror', () => {
  let dir: string;
  let mirror: EmbeddedMirror;
  // What health reads: the v2 index (the v1 latest.json only when no index exists).
  const latest = () => join(dir, 'manifests', 'v2', 'index.json');
  const health = async () => {
    const res = await fetch(`${mirror.url}/healthz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  /** Replaces latest.json as a whole (a new file, as the publisher writes it). */
  const replaceLatest = (text: string) => {
    writeFileSync(`${latest()}.new`, text);
    renameSync(`${latest()}.new`, latest());
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-health-'));
    mirror = await startEmbedded({
      config: defaultConfig(),
      dataDir: dir,
      port: 0,
      env: {},
      logger: silentLogger,
    });
    await waitForManifest(mirror.url, () => true);
  });
  afterAll(async () => {
    await mirror?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is 200 with an unexpired manifest, 503 once it has expired, 503 when it is gone', async () => {
    // Act / Assess
    const ok = await health();
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ status: 'ok', manifest: { version: 1 } });

    const envelope = JSON.parse(readFileSync(latest(), 'utf8')) as { payload: string };
    const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Record<
      string,
      unknown
    >;
    const expiresAt = '2020-01-01T00:00:00Z';
    replaceLatest(
      JSON.stringify({
        ...envelope,
        payload: Buffer.from(
          JSON.stringify({ ...payload, issuedAt: '2019-12-31T00:00:00Z', expiresAt }),
        ).toString('base64'),
      }),
    );
    const expired = await health();
    expect(expired.status).toBe(503);
    expect(expired.body).toMatchObject({
      status: 'unhealthy',
      reason: 'manifest-expired',
      manifest: { version: 1, expiresAt },
    });
    expect(expired.body.message).toContain(expiresAt);

    rmSync(latest());
    rmSync(join(dir, 'manifests', 'latest.json'));
    const missing = await health();
    expect(missing.status).toBe(503);
    expect(missing.body).toMatchObject({ status: 'unhealthy', reason: 'manifest-missing' });

    replaceLatest('not a manifest');
    expect(await health()).toMatchObject({ status: 503, body: { reason: 'manifest-unreadable' } });
  });

  it('counts a missing manifest as start-up until the first publish has run', async () => {
    // Prepare
    const empty = mkdtempSync(join(tmpdir(), 'wm-health-empty-'));
    try {
      const store = await FsObjectStore.open({ root: empty });
      let startedUp = false;
      const check = manifestHealth({ store, clock: { now: () => new Date() } }, () => startedUp);
      // Act / Assess
      expect(await check()).toEqual({ healthy: true, body: { status: 'starting' } });
      startedUp = true;
      expect(await check()).toMatchObject({ healthy: false, body: { reason: 'manifest-missing' } });
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});
