/**
 * What a client can make the embedded server hold: a stranger's body is never read (the head is
 * checked first and the connection closed), bodies being read share a byte budget, connections
 * are capped, and a body that does not arrive in time is given up.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { parseConfig } from '../../shared/core/config.ts';
import type { MirrorJob } from '../../shared/core/domain.ts';
import { createWebhookReceiver } from '../../shared/core/pipeline/receive.ts';
import { noMetrics, silentLogger, systemClock } from '../../shared/core/ports.ts';
import { createMirrorServer, listen, type MirrorHttpOptions } from '../../shared/embedded/http-server.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope } from '../support/mirror.ts';

const SECRET = 'limits-secret';
const DIGEST = `sha256:${'b'.repeat(64)}`;
const config = parseConfig(`
sources:
  - { id: local, type: distribution, registry: "reg.example:5000", repositories: ["plugins/**"], webhookSecretEnv: HOOK }
  - { id: gh, type: github, registry: "ghcr.io", repositories: ["acme/**"], webhookSecretEnv: HOOK }
  - { id: hub, type: dockerhub, registry: "registry-1.docker.io", repositories: ["acme/**"], webhookSecretEnv: HOOK }
`);

describe('embedded HTTP limits', () => {
  let dir: string;
  let server: Server | undefined;
  let port: number;
  let queued: MirrorJob[];
  const sockets: Socket[] = [];

  const start = async (limits: Partial<MirrorHttpOptions> = {}) => {
    const store = await FsObjectStore.open({ root: dir });
    const receive = createWebhookReceiver({
      config,
      store,
      mirrorQueue: { send: async (job) => void queued.push(job) },
      secrets: { get: async () => SECRET },
      clock: systemClock,
      logger: silentLogger,
      metrics: noMetrics,
    });
    server = createMirrorServer({
      store,
      receiveWebhook: receive,
      admitWebhook: receive.admit,
      renderMetrics: () => '',
      status: async () => ({}),
      logger: silentLogger,
      ...limits,
    });
    port = Number(new URL(await listen(server, 0, '127.0.0.1')).port);
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'wm-limits-'));
    queued = [];
  });
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    if (server !== undefined) {
      server.closeAllConnections();
      await new Promise((r) => server!.close(r));
      server = undefined;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends a request head (and no body), resolving with what the server answers before closing. */
  const headOnly = (path: string, headers: Record<string, string>, waitMs = 3_000) =>
    new Promise<{ status: number | undefined; closed: boolean; reply: string }>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      sockets.push(socket);
      let reply = '';
      const done = (closed: boolean) => {
        clearTimeout(timer);
        const status = /^HTTP\/1\.1 (\d{3})/.exec(reply);
        resolve({ status: status === null ? undefined : Number(status[1]), closed, reply });
      };
      const timer = setTimeout(() => done(false), waitMs);
      socket.on('data', (chunk) => {
        reply += chunk.toString('latin1');
      });
      socket.on('error', () => {});
      socket.on('close', () => done(true));
      const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}`);
      socket.write(`POST ${path} HTTP/1.1\r\nhost: mirror.example\r\n${lines.join('\r\n')}\r\n\r\n`);
    });

  const genuine = () =>
    fetch(`http://127.0.0.1:${port}/hooks/local`, {
      method: 'POST',
      headers: { authorization: `Bearer ${SECRET}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: distributionEnvelope([
        { repository: 'plugins/a', tag: '1.0', digest: DIGEST, host: 'reg.example:5000' },
      ]),
    });

  it('refuses a wrong header, Basic or path token with 401 before the body is sent, and closes', async () => {
    // Prepare
    await start();
    const big = { 'content-length': String(1024 * 1024) };
    // Act / Assess
    for (const authorization of ['Bearer nope', 'Basic bm9wZTpub3Bl', '']) {
      const res = await headOnly('/hooks/local', { ...big, authorization });
      expect(res, authorization).toMatchObject({ status: 401, closed: true });
      expect(res.reply).toContain('"code":"WEBHOOK_UNAUTHENTICATED"');
    }
    expect(await headOnly('/hooks/hub/not-the-token', big)).toMatchObject({ status: 401, closed: true });
    expect(await headOnly('/hooks/hub', big)).toMatchObject({ status: 401, closed: true });
    // A body-signing sender with no signature at all cannot be genuine either.
    expect(await headOnly('/hooks/gh', big)).toMatchObject({ status: 401, closed: true });
    expect(await headOnly('/hooks/nope', big)).toMatchObject({ status: 404, closed: true });
    // More than the cap, declared: 413 unread.
    const tooBig = { 'content-length': String(2 * 1024 * 1024), authorization: `Bearer ${SECRET}` };
    expect(await headOnly('/hooks/local', tooBig)).toMatchObject({ status: 413, closed: true });
    expect((await genuine()).status).toBe(202);
  });

  it('answers Expect: 100-continue only for an admitted head', async () => {
    // Prepare
    await start();
    const expectContinue = { 'content-length': '100', expect: '100-continue' };
    // Act / Assess
    const stranger = await headOnly('/hooks/local', { ...expectContinue, authorization: 'Bearer nope' });
    expect(stranger).toMatchObject({ status: 401, closed: true });
    const sender = await headOnly(
      '/hooks/local',
      { ...expectContinue, authorization: `Bearer ${SECRET}` },
      500,
    );
    expect(sender).toMatchObject({ status: 100, closed: false });
  });

  it('shares a byte budget among the bodies being read: past it, 503 with Retry-After, unread', async () => {
    // Prepare
    await start({ maxInFlightBodyBytes: 2 * 1024 * 1024, bodyTimeoutMs: 2_000 });
    const signed = {
      'content-length': String(600 * 1024),
      'x-hub-signature-256': `sha256=${'0'.repeat(64)}`,
      'x-github-event': 'registry_package',
    };
    // Act / Assess
    // The first slow upload is admitted and waits for its body.
    const first = headOnly('/hooks/gh', signed, 1_000);
    await new Promise((r) => setTimeout(r, 200));
    // One source may hold half the budget: a second 600 KiB body to it does not fit.
    const second = await headOnly('/hooks/gh', signed);
    expect(second).toMatchObject({ status: 503, closed: true });
    expect(second.reply).toMatch(/retry-after: 5/i);
    expect(second.reply).toContain('"code":"SERVER_BUSY"');
    // Another source's delivery is still taken.
    expect((await genuine()).status).toBe(202);
    expect((await first).status).toBeUndefined();
  });

  it('gives up a body that does not arrive in time, and frees its share of the budget', async () => {
    // Prepare
    await start({ maxInFlightBodyBytes: 1024 * 1024, bodyTimeoutMs: 500 });
    const signed = {
      'content-length': String(1024 * 1024),
      'x-hub-signature-256': `sha256=${'0'.repeat(64)}`,
    };
    // Act / Assess
    const stalled = await headOnly('/hooks/gh', signed, 3_000);
    expect(stalled).toMatchObject({ status: 408, closed: true });
    const next = await headOnly('/hooks/gh', signed, 200);
    expect(next.status).toBeUndefined(); // admitted: waiting for its body, not refused
  });

  it('caps concurrent connections', async () => {
    // Prepare
    await start({ maxConnections: 5 });
    const idle = await Promise.all(
      Array.from({ length: 5 }, () => {
        const socket = connect(port, '127.0.0.1');
        sockets.push(socket);
        socket.on('error', () => {});
        return new Promise<void>((r) => socket.once('connect', () => r()));
      }),
    );
    expect(idle).toHaveLength(5);
    await new Promise((r) => setTimeout(r, 100));
    // Act / Assess: the sixth is dropped as it arrives.
    await expect(genuine()).rejects.toThrow();
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect((await genuine()).status).toBe(202);
  });
});
