/**
 * The sync loop's timing, with a scripted agent, injected random and a recording sleep: no test
 * here waits for real time to pass.
 */
import { describe, expect, it, vi } from 'vitest';
import { runAgentLoop, type SyncResult } from '../../shared/agent/index.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';

const OK: SyncResult = {
  version: 1,
  format: 'v2',
  notModified: true,
  accepted: false,
  downloaded: 0,
  cached: 0,
  removed: 0,
  selected: 0,
  nodesFetched: 0,
  manifestBytes: 0,
  requests: 1,
};

/** An agent whose syncs succeed or fail as scripted ('ok' / 'fail'); the sync after the last aborts. */
function scripted(script: ('ok' | 'fail')[], controller: AbortController) {
  let call = 0;
  return {
    async syncOnce(): Promise<SyncResult> {
      const step = script[call++];
      if (step === undefined) controller.abort();
      if (step !== 'ok') throw new WasmMirrorError('MIRROR_UNAVAILABLE', 'down', { retryable: true });
      return OK;
    },
  };
}

async function waitsOf(
  script: ('ok' | 'fail')[],
  options: { intervalMs: number; random: () => number; jitter?: number; maxBackoffMs?: number },
): Promise<number[]> {
  const controller = new AbortController();
  const waits: number[] = [];
  await runAgentLoop(scripted(script, controller), {
    ...options,
    signal: controller.signal,
    sleep: async (ms) => void waits.push(ms),
  });
  return waits;
}

describe('runAgentLoop', () => {
  it('waits the interval, spread by ±jitter, while syncs succeed', async () => {
    // Prepare
    const script: 'ok'[] = ['ok', 'ok'];

    // Act
    const low = await waitsOf(script, { intervalMs: 30_000, random: () => 0 });
    const middle = await waitsOf(script, { intervalMs: 30_000, random: () => 0.5 });
    const high = await waitsOf(script, { intervalMs: 30_000, random: () => 1, jitter: 0.2 });

    // Assess
    expect(low).toEqual([27_000, 27_000]);
    expect(middle).toEqual([30_000, 30_000]);
    expect(high).toEqual([36_000, 36_000]);
  });

  it('backs off exponentially from 1 s up to the cap, then returns to the interval', async () => {
    // Prepare
    const script = ['fail', 'fail', 'fail', 'fail', 'fail', 'ok', 'fail'] as ('ok' | 'fail')[];

    // Act
    const waits = await waitsOf(script, { intervalMs: 30_000, random: () => 0.5, maxBackoffMs: 10_000 });

    // Assess
    expect(waits).toEqual([1000, 2000, 4000, 8000, 10_000, 30_000, 1000]);
  });

  it('jitters the backoff to either side as well', async () => {
    // Prepare
    const script = ['fail', 'fail'] as ('ok' | 'fail')[];

    // Act
    const low = await waitsOf(script, { intervalMs: 30_000, random: () => 0 });
    const high = await waitsOf(script, { intervalMs: 30_000, random: () => 1 });

    // Assess
    expect(low).toEqual([900, 1800]);
    expect(high).toEqual([1100, 2200]);
  });

  it('caps the backoff at max(interval, 5 min) by default', async () => {
    // Prepare
    const script = Array.from({ length: 12 }, () => 'fail' as const);

    // Act
    const waits = await waitsOf(script, { intervalMs: 30_000, random: () => 0.5 });

    // Assess
    expect(waits.slice(-3)).toEqual([300_000, 300_000, 300_000]);
  });

  it('syncs on every round even with no onResult listener', async () => {
    // Prepare
    const controller = new AbortController();
    const agent = scripted(['ok', 'fail', 'ok'], controller);
    const syncOnce = vi.spyOn(agent, 'syncOnce');
    let waits = 0;
    // Bounded, so a loop that stopped calling the agent ends the test instead of spinning.
    const sleep = async () => {
      if (++waits > 10) controller.abort();
    };

    // Act
    await runAgentLoop(agent, { intervalMs: 30_000, signal: controller.signal, sleep });

    // Assess: the three scripted syncs, then the one that aborts
    expect(syncOnce).toHaveBeenCalledTimes(4);
  });

  it('stops without reporting a sync cut short by the abort', async () => {
    // Prepare
    const controller = new AbortController();
    const results: unknown[] = [];
    const agent = {
      async syncOnce(): Promise<SyncResult> {
        controller.abort();
        throw new WasmMirrorError('TIMEOUT', 'aborted', { retryable: true });
      },
    };

    // Act
    await runAgentLoop(agent, {
      intervalMs: 30_000,
      signal: controller.signal,
      onResult: (r) => results.push(r),
      sleep: async () => {
        throw new Error('must not wait after an abort');
      },
    });

    // Assess
    expect(results).toEqual([]);
  });
});
