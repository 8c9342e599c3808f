/**
 * The one retry-delay formula every retry loop shares, its total-time budget and the Retry-After
 * parser, with randomness and the clock injected so every delay is exact.
 */
import { describe, expect, it } from 'vitest';
import { backoffDelay, parseRetryAfterMs, RetryBudget } from '../../shared/core/backoff.ts';

const highest = () => 1;
const lowest = () => 0;

describe('backoffDelay', () => {
  it('doubles the delay with each attempt', () => {
    // Prepare
    const policy = { baseMs: 100, maxMs: 60_000 };

    // Act
    const delays = [1, 2, 3, 4, 5].map((attempt) => backoffDelay(policy, attempt, { random: highest }));

    // Assess
    expect(delays).toEqual([100, 200, 400, 800, 1600]);
  });

  it('never waits longer than the cap, however many attempts', () => {
    // Prepare
    const policy = { baseMs: 100, maxMs: 1_000 };

    // Act
    const delays = [5, 10, 1_000, Number.MAX_SAFE_INTEGER].map((attempt) =>
      backoffDelay(policy, attempt, { random: highest }),
    );

    // Assess
    expect(delays).toEqual([1_000, 1_000, 1_000, 1_000]);
  });

  it('keeps the jittered delay between the fixed part and the full delay', () => {
    // Prepare
    const policy = { baseMs: 1_000, maxMs: 60_000 };
    const narrow = { ...policy, jitter: 0.2 };

    // Act
    const low = backoffDelay(policy, 3, { random: lowest });
    const middle = backoffDelay(policy, 3, { random: () => 0.5 });
    const high = backoffDelay(policy, 3, { random: highest });
    const narrowLow = backoffDelay(narrow, 3, { random: lowest });

    // Assess
    expect(low).toBe(2_000);
    expect(middle).toBe(3_000);
    expect(high).toBe(4_000);
    expect(narrowLow).toBe(3_200);
  });

  it('treats attempts below 1 as the first', () => {
    // Prepare
    const policy = { baseMs: 100, maxMs: 1_000 };

    // Act
    const delay = backoffDelay(policy, 0, { random: highest });

    // Assess
    expect(delay).toBe(100);
  });

  it('waits at least as long as Retry-After asks', () => {
    // Prepare
    const policy = { baseMs: 100, maxMs: 10_000 };

    // Act
    const asked = backoffDelay(policy, 1, { retryAfterMs: 5_000, random: highest });
    const shorterThanBackoff = backoffDelay(policy, 4, { retryAfterMs: 50, random: highest });

    // Assess
    expect(asked).toBe(5_000);
    expect(shorterThanBackoff).toBe(800);
  });

  it('caps a Retry-After longer than the policy allows', () => {
    // Prepare
    const policy = { baseMs: 100, maxMs: 10_000 };

    // Act
    const delay = backoffDelay(policy, 1, { retryAfterMs: 3_600_000, random: lowest });

    // Assess
    expect(delay).toBe(10_000);
  });
});

describe('RetryBudget', () => {
  it('counts down on the injected clock and never goes negative', () => {
    // Prepare
    let now = 1_000;
    const budget = new RetryBudget(5_000, () => now);

    // Act
    const atStart = budget.remainingMs();
    now += 3_000;
    const later = budget.remainingMs();
    now += 10_000;
    const past = budget.remainingMs();

    // Assess
    expect(atStart).toBe(5_000);
    expect(later).toBe(2_000);
    expect(past).toBe(0);
  });

  it('allows a wait only when time is left after it', () => {
    // Prepare
    let now = 0;
    const budget = new RetryBudget(1_000, () => now);

    // Act
    const short = budget.allows(999);
    const exact = budget.allows(1_000);
    now = 2_000;
    const afterDeadline = budget.allows(0);

    // Assess
    expect(short).toBe(true);
    expect(exact).toBe(false);
    expect(afterDeadline).toBe(false);
  });
});

describe('parseRetryAfterMs', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads delta-seconds as milliseconds', () => {
    // Prepare
    const values = ['7', ' 12 ', '0'];

    // Act
    const parsed = values.map((v) => parseRetryAfterMs(v, now));

    // Assess
    expect(parsed).toEqual([7_000, 12_000, 0]);
  });

  it('reads an HTTP date as the time until then, and a past date as no wait', () => {
    // Prepare
    const future = 'Thu, 01 Jan 2026 00:00:30 GMT';
    const past = 'Wed, 31 Dec 2025 23:59:00 GMT';

    // Act
    const untilFuture = parseRetryAfterMs(future, now);
    const untilPast = parseRetryAfterMs(past, now);

    // Assess
    expect(untilFuture).toBe(30_000);
    expect(untilPast).toBe(0);
  });

  it('answers undefined for garbage and for a missing header', () => {
    // Prepare
    const values = ['soon', '', 'later please', '-1', '1.5', '2026-01-01', null, undefined];

    // Act
    const parsed = values.map((v) => parseRetryAfterMs(v, now));

    // Assess
    expect(parsed).toEqual(values.map(() => undefined));
  });
});
