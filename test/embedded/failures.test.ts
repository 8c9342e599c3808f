import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedMirror } from '../../shared/embedded/runtime.ts';
import { type Harness, pushWasm, startHarness, type TestRegistry } from '../support/index.ts';
import { DISTRIBUTION_EVENTS_V1, distributionEnvelope } from '../support/mirror.ts';

const TOKEN = 'failures-suite-token-0001';

interface QueueDepth {
  ready: number;
  inFlight: number;
  delayed: number;
}

interface Status {
  queues: { mirror: QueueDepth; publish: QueueDepth };
  recentFailures: { code: string; reference: string }[];
  deadLetters: { job: { repository: string }; attempts: number; error: { code: string; message: string } }[];
}

describe('mirror failures', () => {
  let registry: TestRegistry;
  let mirror: EmbeddedMirror;

  const deliver = (repository: string, digest: string) =>
    fetch(`${mirror.url}/hooks/local`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: distributionEnvelope([{ repository, tag: '1.0', digest, host: registry.host }]),
    });
  const status = async () => (await (await fetch(`${mirror.url}/status`)).json()) as Status;
  const metrics = async () => (await fetch(`${mirror.url}/metrics`)).text();
  const until = async <T>(probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const value = await probe();
      if (value !== undefined) return value;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error('condition not reached');
  };
  const idle = (d: QueueDepth) => d.ready + d.inFlight + d.delayed === 0;
  /** Both queues drained: nothing waiting, running, or waiting for a retry. */
  const settled = () =>
    until(async () => {
      const s = await status();
      return idle(s.queues.mirror) && idle(s.queues.publish) ? s : undefined;
    });

  let harness: Harness;

  beforeAll(async () => {
    harness = await startHarness({
      mirrorName: 'failures',
      token: TOKEN,
      retry: { maxAttempts: 3, backoffBaseMs: 50 },
    });
    ({ registry, mirror } = harness);
  });

  afterAll(() => harness?.stop());

  it('rejects an artifact that is not Wasm once, with its reason', async () => {
    // Prepare
    const notWasm = new TextEncoder().encode('#!/bin/sh\necho definitely not wasm\n');
    const { digest } = await pushWasm(registry.host, 'plugins/not-wasm:1.0', notWasm, 'wasm-artifact');
    // Act
    expect((await deliver('plugins/not-wasm', digest)).status).toBe(202);
    const failure = await until(async () =>
      (await status()).recentFailures.find((f) => f.reference.includes('not-wasm')),
    );
    // Assess
    expect(failure.code).toBe('NOT_WASM');
    // A retry would keep the job in the queue (delayed or in flight): wait until it is empty.
    const after = await settled();
    const text = await metrics();
    expect(text).toMatch(/wasm_mirror_mirror_results_total\{[^}]*reason="NOT_WASM"[^}]*\} 1\n/);
    expect(after.deadLetters).toHaveLength(0);
    expect(after.recentFailures.filter((f) => f.reference.includes('not-wasm'))).toHaveLength(1);
  });

  it('retries a registry outage and dead-letters the job with its reason', async () => {
    // Prepare
    const { digest } = await pushWasm(
      registry.host,
      'plugins/outage:1.0',
      new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]),
      'wasm-artifact',
    );
    await registry.stop();
    // Act
    expect((await deliver('plugins/outage', digest)).status).toBe(202);
    const dead = await until(
      async () => (await status()).deadLetters.find((d) => d.job.repository === 'plugins/outage'),
      60_000,
    );
    // Assess
    expect(dead.attempts).toBe(3);
    expect(dead.error.code).toBe('REGISTRY_UNAVAILABLE');
    expect(await metrics()).toMatch(/wasm_mirror_dead_letters\{queue="mirror"\} 1\n/);
  });
});
