/**
 * Retry delays, one formula for every retry loop (registry requests, queue redeliveries, the
 * agent's sync loop): exponential from `baseMs`, capped at `maxMs`, with "equal jitter" (half
 * fixed, half random) so a fleet does not retry in step. A server's Retry-After is honoured: the
 * delay is never shorter than what it asked, and never longer than the cap.
 */

export interface BackoffPolicy {
  /** Delay before the first retry. */
  baseMs: number;
  /** Longest delay. */
  maxMs: number;
  /** Fraction of the delay that is random. @default 0.5 */
  jitter?: number;
}

/** Delay before retry number `attempt` (1 = the first retry). */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  options: { retryAfterMs?: number | undefined; random?: () => number } = {},
): number {
  const jitter = policy.jitter ?? 0.5;
  const random = options.random ?? Math.random;
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 40));
  const delay = exp * (1 - jitter) + random() * exp * jitter;
  const asked = options.retryAfterMs ?? 0;
  return Math.round(Math.min(policy.maxMs, Math.max(delay, asked)));
}

/**
 * A total time budget for one operation and its retries: a retry whose wait would end past the
 * deadline is not attempted (a Retry-After longer than what is left fails at once).
 */
export class RetryBudget {
  readonly #deadline: number;
  readonly #now: () => number;

  constructor(totalMs: number, now: () => number = Date.now) {
    this.#now = now;
    this.#deadline = now() + totalMs;
  }

  /** Milliseconds left, never negative. */
  remainingMs(): number {
    return Math.max(0, this.#deadline - this.#now());
  }

  /** True when waiting `delayMs` still leaves time for another attempt. */
  allows(delayMs: number): boolean {
    return delayMs < this.remainingMs();
  }
}

/** Retry-After (delta-seconds or an HTTP date) in milliseconds, or undefined when absent or invalid. */
export function parseRetryAfterMs(value: string | null | undefined, nowMs: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date names a weekday and month; anything else (`-1`, `1.5`) is not one.
  if (!/^[A-Za-z]{3},/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** Resolves after `ms`, or at once when the signal aborts (it never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
