/**
 * The agent's sync loop: one sync every interval, with jitter so a fleet does not poll in step;
 * after failures, exponential backoff from 1 s up to a cap. A failed sync leaves the last good
 * modules in place, so the loop only has to keep trying.
 */
import { type BackoffPolicy, backoffDelay, sleep } from '../core/backoff.ts';
import { toWasmMirrorError, type WasmMirrorError } from '../core/errors.ts';
import type { SyncResult, WasmMirrorAgent } from './agent.ts';

export interface LoopOptions {
  intervalMs: number;
  signal: AbortSignal;
  /** Fraction of the delay added or removed at random, so a fleet does not poll in step. @default 0.1 */
  jitter?: number;
  /** Longest wait after repeated failures. @default max(interval, 5 min) */
  maxBackoffMs?: number;
  random?: () => number;
  /** Waits between syncs, returning early on abort. @default the core's `sleep` */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  onResult?: (result: SyncResult | WasmMirrorError) => void;
}

const FIRST_BACKOFF_MS = 1000;

/**
 * The core's policy jitters below its delay; the loop spreads `jitter` to either side of it.
 * Raising delay and cap by (1 + jitter) and making 2·jitter / (1 + jitter) of that random gives
 * delay · (1 ± jitter).
 */
function eitherSide(baseMs: number, maxMs: number, jitter: number): BackoffPolicy {
  const top = 1 + jitter;
  return { baseMs: baseMs * top, maxMs: maxMs * top, jitter: (2 * jitter) / top };
}

/** Syncs every interval (with jitter) until aborted; failures back off exponentially from 1 s. */
export async function runAgentLoop(
  agent: Pick<WasmMirrorAgent, 'syncOnce'>,
  options: LoopOptions,
): Promise<void> {
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.1));
  const maxBackoff = options.maxBackoffMs ?? Math.max(options.intervalMs, 300_000);
  const random = options.random ?? Math.random;
  const wait = options.sleep ?? sleep;
  const healthy = eitherSide(options.intervalMs, options.intervalMs, jitter);
  const failing = eitherSide(FIRST_BACKOFF_MS, maxBackoff, jitter);
  let failures = 0;
  while (!options.signal.aborted) {
    try {
      // Not inside `onResult?.(...)`: an optional call skips evaluating its argument when absent.
      const result = await agent.syncOnce(options.signal);
      failures = 0;
      options.onResult?.(result);
    } catch (err) {
      if (options.signal.aborted) break;
      failures++;
      options.onResult?.(toWasmMirrorError(err));
    }
    const delay =
      failures === 0 ? backoffDelay(healthy, 1, { random }) : backoffDelay(failing, failures, { random });
    await wait(delay, options.signal);
  }
}
