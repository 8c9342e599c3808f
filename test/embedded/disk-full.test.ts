/**
 * Nothing is lost when the disk fills during pulls. The embedded mirror's data directory sits on a
 * small real tmpfs (mounted for the test; the test environment runs as root): the disk is filled,
 * pushes are delivered while module pulls fail with ENOSPC, the space is freed, and every module
 * must end up listed. Where mounting is not permitted the test fails and says so.
 *
 * Also: an error nobody classified, even one already wrapped as a permanent INTERNAL, is retried
 * and ends in the dead-letter area instead of being acknowledged.
 */
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/core/config.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { OciWasmPuller } from '../../shared/core/wasm/puller.ts';
import { type EmbeddedMirror, startEmbedded } from '../../shared/embedded/runtime.ts';
import { requireSmallDisk } from '../adapters/local/fixtures/small-disk.ts';
import { largeWasm, pushWasm, startRegistry, type TestRegistry } from '../support/index.ts';
import {
  DISTRIBUTION_EVENTS_V1,
  distributionEnvelope,
  sha256Of,
  waitForManifest,
} from '../support/mirror.ts';

const TOKEN = 'disk-full-suite-token-0001';
const MODULES = 6;
const MODULE_BYTES = 600 * 1024;

function config(registryHost: string) {
  return parseConfig(
    `mirror: { name: disk-full }\nsources:\n  - { id: local, type: distribution, registry: "${registryHost}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }\n`,
  );
}

async function deliver(mirror: EmbeddedMirror, registry: TestRegistry, repository: string, digest: string) {
  const res = await fetch(`${mirror.url}/hooks/local`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
    body: distributionEnvelope([{ repository, tag: '1.0', digest, host: registry.host }]),
  });
  await res.arrayBuffer();
  return res.status;
}

/**
 * Delivers as a registry does: a 5xx (the mirror could not queue it, the disk being full at that
 * instant) is sent again after a pause. Returns the statuses seen.
 */
async function deliverUntilAccepted(
  mirror: EmbeddedMirror,
  registry: TestRegistry,
  repository: string,
  digest: string,
): Promise<number[]> {
  const seen: number[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    const status = await deliver(mirror, registry, repository, digest);
    seen.push(status);
    if (status < 500) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return seen;
}

/** Sum of the mirror results counter, per reason. */
async function mirrorResults(mirror: EmbeddedMirror): Promise<Record<string, number>> {
  const text = await (await fetch(`${mirror.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^wasm_mirror_mirror_results_total\{([^}]*)\} (\d+)$/gm)) {
    const reason = /reason="([^"]+)"/.exec(m[1]!)?.[1] ?? '';
    out[reason] = (out[reason] ?? 0) + Number(m[2]);
  }
  return out;
}

async function until<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 45_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('embedded mirror on a full disk', () => {
  let registry: TestRegistry;
  const modules = Array.from({ length: MODULES }, () => largeWasm(MODULE_BYTES));
  const digests: string[] = [];

  beforeAll(async () => {
    registry = await startRegistry();
    for (const [i, bytes] of modules.entries()) {
      digests.push((await pushWasm(registry.host, `plugins/full-${i}:1.0`, bytes, 'wasm-artifact')).digest);
    }
  });
  afterAll(() => registry?.stop());

  it('pulls that hit ENOSPC are retried, and every module is listed once space is freed', async () => {
    // Prepare
    const disk = requireSmallDisk(16 * 1024 * 1024);
    const dataDir = join(disk.dir, 'data');
    mkdirSync(dataDir);
    const mirror = await startEmbedded({
      config: config(registry.host),
      dataDir,
      port: 0,
      env: { HOOK_TOKEN: TOKEN },
      logger: silentLogger,
      retry: { maxAttempts: 10, backoffBaseMs: 100 },
    });
    try {
      await waitForManifest(mirror.url, () => true);
      // Room for queue messages and notes (a few KiB each), none for a 600 KiB module.
      disk.fill(256 * 1024);

      // Act
      const statuses: number[] = [];
      for (const [i, digest] of digests.entries()) {
        const seen = await deliverUntilAccepted(mirror, registry, `plugins/full-${i}`, digest);
        statuses.push(seen[seen.length - 1]!);
      }
      // Every job has been tried at least once on the full disk.
      const whileFull = await until(async () => {
        const results = await mirrorResults(mirror);
        const tried = Object.values(results).reduce((a, b) => a + b, 0);
        return tried >= MODULES ? results : undefined;
      }, 'every job to be tried once');
      disk.free();
      const listed = await waitForManifest(
        mirror.url,
        (p) => digests.every((d) => p.modules.some((m) => m.ociDigest === d)),
        45_000,
      );
      const status = (await (await fetch(`${mirror.url}/status`)).json()) as {
        recentFailures: unknown[];
        deadLetters: unknown[];
      };

      // Assess
      expect(statuses).toEqual(Array(MODULES).fill(202));
      expect(whileFull.STORAGE_FAILURE ?? 0).toBeGreaterThanOrEqual(1);
      expect(whileFull.INTERNAL ?? 0).toBe(0);
      for (const [i, bytes] of modules.entries()) {
        const entry = listed.payload.modules.find((m) => m.name === `${registry.host}/plugins/full-${i}`);
        expect(entry?.sha256, `plugins/full-${i}`).toBe(sha256Of(bytes));
      }
      expect(status.recentFailures).toEqual([]);
      expect(status.deadLetters).toEqual([]);
    } finally {
      await mirror.stop();
      disk.unmount();
    }
  });

  it('the puller reports a full staging disk as a retryable STORAGE_FAILURE and leaves no file', async () => {
    // Prepare
    const disk = requireSmallDisk(2 * 1024 * 1024);
    try {
      disk.fill(128 * 1024);
      const puller = new OciWasmPuller();

      // Act
      const failed = await puller
        .pullToFile(
          { registry: registry.host, repository: 'plugins/full-0', reference: digests[0]!, insecure: true },
          join(disk.dir, 'module.wasm'),
        )
        .catch((err: unknown) => err);

      // Assess
      expect(failed).toMatchObject({ code: 'STORAGE_FAILURE', retryable: true });
      expect(readdirSync(disk.dir).filter((n) => n !== 'filler')).toEqual([]);
    } finally {
      disk.unmount();
    }
  });

  it('an unclassified error, even one wrapped as a permanent INTERNAL, is retried and dead-lettered', async () => {
    // Prepare
    const dataDir = mkdtempSync(join(tmpdir(), 'wm-unclassified-'));
    const mirror = await startEmbedded({
      config: config(registry.host),
      dataDir,
      port: 0,
      env: { HOOK_TOKEN: TOKEN },
      logger: silentLogger,
      retry: { maxAttempts: 3, backoffBaseMs: 20 },
    });
    try {
      const puller = mirror.deps.puller as OciWasmPuller;
      let calls = 0;
      puller.pullToFile = async () => {
        calls++;
        throw new WasmMirrorError('INTERNAL', 'something nobody expected');
      };

      // Act
      expect(await deliver(mirror, registry, 'plugins/full-1', digests[1]!)).toBe(202);
      const status = await until(async () => {
        const s = (await (await fetch(`${mirror.url}/status`)).json()) as {
          recentFailures: unknown[];
          deadLetters: { attempts: number; error: { code: string } }[];
        };
        return s.deadLetters.length > 0 || s.recentFailures.length > 0 ? s : undefined;
      }, 'the job to end somewhere');

      // Assess
      expect(status.recentFailures).toEqual([]);
      expect(status.deadLetters).toHaveLength(1);
      expect(status.deadLetters[0]).toMatchObject({ attempts: 3, error: { code: 'INTERNAL' } });
      expect(calls).toBe(3);
    } finally {
      await mirror.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
