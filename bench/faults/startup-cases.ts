/**
 * Wrong answers about the server's own state: a lost signing key, an expired manifest, a lock file
 * that names no holder.
 */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PRIVATE_KEY_FILE } from '../../shared/adapters/local/signer.ts';
import { proxyWasmModule } from '../../test/support/wasm.ts';
import { type CaseContext, type CaseResult, NOTHING, rig } from './case.ts';
import { MirrorServer, until } from './harness.ts';
import { listingOver, type Pushed, pinKeys, push, settle } from './listing.ts';

/**
 * Two modules listed, the server stopped, its private key deleted: serve refuses to start (exit 1,
 * KEY_MISSING) and leaves keys.json alone; with the key restored from a backup it starts, and
 * agents pinned to the original keys verify every listing, a new push included.
 */
export async function lostSigningKey({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const { registry, server, dataDir, mirrorName } = await rig(scope, 'faults-lost-key');
  await server.up();
  const read = listingOver(server.url, await pinKeys(server.url), mirrorName);
  const pushed: Pushed[] = [];
  for (let i = 0; i < 2; i++) {
    pushed.push(
      await push(
        registry.host,
        `plugins/key-${i}:1.0`,
        proxyWasmModule({ marker: `key ${i} ${Date.now()}` }),
      ),
    );
  }
  await settle(read, pushed, 20_000);
  await server.stop();

  const keyFile = join(dataDir, 'private', PRIVATE_KEY_FILE);
  const keysJson = join(dataDir, 'keys.json');
  const backup = readFileSync(keyFile);
  const keysBefore = readFileSync(keysJson, 'utf8');
  unlinkSync(keyFile);
  const refused = await server.start(20_000);
  const keysAfter = readFileSync(keysJson, 'utf8');

  writeFileSync(keyFile, backup, { mode: 0o600 });
  await server.up();
  pushed.push(
    await push(registry.host, 'plugins/key-2:1.0', proxyWasmModule({ marker: `key 2 ${Date.now()}` })),
  );
  const t = await settle(read, pushed, 30_000);

  check(
    refused?.exitCode === 1,
    `serve refuses to start without the key (exit ${refused?.exitCode ?? 'none: it started'})`,
  );
  check(/KEY_MISSING/.test(server.stderr), 'and says KEY_MISSING');
  check(keysAfter === keysBefore, 'keys.json is left as it was (no new key appended)');
  note('key restored from backup: the original keys verify every listing after the restart');
  server.rssKiB();
  return { accepted: await server.accepted(), tally: t, peakKiB: server.peakKiB };
}

/**
 * The signed index swapped for a copy that expired (what a mirror that stopped re-signing serves
 * after manifestTtl) while the server runs: /healthz answers 503 manifest-expired, and 200 again
 * once the current index is back.
 */
export async function healthzExpired({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const dataDir = join(scope.tempDir('healthz'), 'data');
  const server = await MirrorServer.create(scope, { dataDir, config: 'mirror: { name: faults-healthz }\n' });
  await server.up();
  const health = async () => {
    const res = await fetch(`${server.url}/healthz`);
    return { status: res.status, body: (await res.json()) as { status?: string; reason?: string } };
  };
  const ok = await until(
    'a published manifest',
    async () => {
      const h = await health();
      return h.body.status === 'ok' ? h : undefined;
    },
    20_000,
  );

  const index = join(dataDir, 'manifests', 'v2', 'index.json');
  const current = readFileSync(index);
  const replace = (bytes: Uint8Array | string) => {
    writeFileSync(`${index}.faults`, bytes);
    renameSync(`${index}.faults`, index);
  };
  const envelope = JSON.parse(current.toString('utf8')) as { payload: string };
  const payload = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as Record<
    string,
    unknown
  >;
  const expired = { ...payload, issuedAt: '2019-12-31T00:00:00Z', expiresAt: '2020-01-01T00:00:00Z' };
  replace(JSON.stringify({ ...envelope, payload: Buffer.from(JSON.stringify(expired)).toString('base64') }));
  const stale = await health();
  replace(current);
  const back = await health();

  check(ok.status === 200, 'healthy with a current manifest');
  check(
    stale.status === 503 && stale.body.reason === 'manifest-expired',
    `503 manifest-expired with an expired one (${stale.status} ${stale.body.reason ?? stale.body.status})`,
  );
  check(back.status === 200, 'healthy again once the current one is back');
  note(`200 → ${stale.status} ${stale.body.reason} → ${back.status}`);
  server.rssKiB();
  return { accepted: 0, tally: NOTHING, peakKiB: server.peakKiB };
}

/**
 * An empty publisher.lock (a disk that filled while it was written): serve waits until it has not
 * changed for the 5 s grace, in case a writer is mid-way, then takes it over and starts.
 */
export async function emptyLockFile({ scope, check, note }: CaseContext): Promise<CaseResult> {
  const dataDir = join(scope.tempDir('lock'), 'data');
  mkdirSync(dataDir, { recursive: true });
  const lockFile = join(dataDir, 'publisher.lock');
  writeFileSync(lockFile, '');
  const server = await MirrorServer.create(scope, { dataDir, config: 'mirror: { name: faults-lock }\n' });
  const started = performance.now();
  await server.up(30_000);
  const upMs = performance.now() - started;
  await until(
    'a published manifest',
    async () => {
      const res = await fetch(`${server.url}/healthz`);
      return ((await res.json()) as { status?: string }).status === 'ok' ? true : undefined;
    },
    20_000,
  );
  const holder = JSON.parse(readFileSync(lockFile, 'utf8')) as { pid?: number };

  check(
    upMs >= 4_000,
    `serve does not take a lock file that may still be being written (${(upMs / 1000).toFixed(1)} s)`,
  );
  check(upMs < 15_000, `serve starts within 15 s (${(upMs / 1000).toFixed(1)} s)`);
  check(holder.pid === server.pid, 'the lock now names the server');
  note(`serving ${(upMs / 1000).toFixed(1)} s after start`);
  server.rssKiB();
  return { accepted: 0, tally: NOTHING, peakKiB: server.peakKiB };
}
