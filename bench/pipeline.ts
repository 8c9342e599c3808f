/**
 * Embedded pipeline figures (run: `npx tsx bench/pipeline.ts`):
 *  1. push-to-listed latency: from the registry accepting a manifest PUT until
 *     manifests/latest.json lists the module, p50/p95 over 50 pushes (registry notifications →
 *     webhook → queue → mirror → publish → served);
 *  2. a burst of 1,000 webhook deliveries for 200 distinct modules: all mirrored, none lost, each
 *     listed once, and the time it took.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../shared/core/config.ts';
import { silentLogger } from '../shared/core/ports.ts';
import { startEmbedded } from '../shared/embedded/runtime.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope, fetchManifest } from '../test/support/mirror.ts';
import { freePort, startRegistry } from '../test/support/registry.ts';
import { proxyWasmModule } from '../test/support/wasm.ts';
import { prepareWasmArtifactPush } from './http-push.ts';

const TOKEN = 'bench-token-0123456789abcdef';
const PUSHES = Number(process.env.BENCH_PUSHES ?? 50);
const BURST_MODULES = Number(process.env.BENCH_BURST_MODULES ?? 200);
const BURST_DELIVERIES = Number(process.env.BENCH_BURST_DELIVERIES ?? 1000);

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

async function main() {
  const port = await freePort();
  const registry = await startRegistry({
    notificationsUrl: `http://127.0.0.1:${port}/hooks/notify`,
    notificationsToken: TOKEN,
  });
  const dataDir = mkdtempSync(join(tmpdir(), 'wm-bench-pipeline-'));
  const config = parseConfig(`
mirror: { name: bench }
sources:
  - { id: notify, type: distribution, registry: "${registry.host}", insecure: true, repositories: ["latency/**"], webhookSecretEnv: HOOK, rateLimitPerMinute: 1000000 }
  - { id: burst, type: distribution, registry: "${registry.host}", insecure: true, repositories: ["burst/**"], webhookSecretEnv: HOOK, rateLimitPerMinute: 1000000 }
`);
  const mirror = await startEmbedded({ config, dataDir, port, env: { HOOK: TOKEN }, logger: silentLogger });
  try {
    // Warm-up: one push end to end, not counted.
    const latencies: number[] = [];
    for (let i = -1; i < PUSHES; i++) {
      const bytes = proxyWasmModule({ marker: `latency ${i} ${Date.now()}` });
      const push = await prepareWasmArtifactPush(registry.url, `latency/m${i + 1}`, '1.0', bytes);
      const t0 = performance.now();
      await push.putManifest();
      for (;;) {
        const m = await fetchManifest(mirror.url);
        if (m?.payload.modules.some((x) => x.ociDigest === push.digest)) break;
        await new Promise((r) => setTimeout(r, 2));
      }
      if (i >= 0) latencies.push(performance.now() - t0);
    }
    latencies.sort((a, b) => a - b);
    console.log(
      `push-to-listed over ${PUSHES} pushes: p50 ${percentile(latencies, 50).toFixed(0)} ms, p95 ${percentile(latencies, 95).toFixed(0)} ms, max ${latencies.at(-1)!.toFixed(0)} ms`,
    );

    // Burst: push 200 modules quietly (repositories the notify source ignores), then deliver 1,000 webhooks.
    const targets: { repo: string; digest: string }[] = [];
    for (let i = 0; i < BURST_MODULES; i++) {
      const bytes = proxyWasmModule({ marker: `burst ${i} ${Date.now()}` });
      const push = await prepareWasmArtifactPush(registry.url, `burst/m${i}`, '1.0', bytes);
      await push.putManifest();
      targets.push({ repo: `burst/m${i}`, digest: push.digest });
    }
    const deliveries = Array.from({ length: BURST_DELIVERIES }, (_, i) => targets[i % targets.length]!);
    deliveries.sort(() => Math.random() - 0.5);
    const t0 = performance.now();
    let next = 0;
    const statuses = new Map<number, number>();
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < deliveries.length) {
          const t = deliveries[next++]!;
          const res = await fetch(`${mirror.url}/hooks/burst`, {
            method: 'POST',
            headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
            body: distributionEnvelope([
              { repository: t.repo, tag: '1.0', digest: t.digest, host: registry.host },
            ]),
          });
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }),
    );
    const accepted = performance.now() - t0;
    const wanted = new Set(targets.map((t) => t.digest));
    let final = await fetchManifest(mirror.url);
    while (!final || [...wanted].some((d) => !final!.payload.modules.some((m) => m.ociDigest === d))) {
      await new Promise((r) => setTimeout(r, 20));
      final = await fetchManifest(mirror.url);
    }
    const done = performance.now() - t0;
    const burstEntries = final.payload.modules.filter((m) => m.name.includes('/burst/'));
    const once = new Set(burstEntries.map((m) => m.name)).size === burstEntries.length;
    console.log(
      `burst: ${BURST_DELIVERIES} deliveries for ${BURST_MODULES} modules: answered in ${(accepted / 1000).toFixed(2)} s (statuses ${JSON.stringify(Object.fromEntries(statuses))}), all ${burstEntries.length} listed in ${(done / 1000).toFixed(2)} s, each once: ${once}, manifest version ${final.payload.version}`,
    );
  } finally {
    await mirror.stop();
    await registry.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

await main();
