import { describe, expect, it } from 'vitest';
import type { Clock } from '../../shared/core/ports.ts';
import { DeliveryDedupe, RateLimiter, WebhookReceiver } from '../../shared/core/sources/index.ts';
import { errorCode, fixture, request, source } from './helpers.ts';

function fakeClock(start = 0): Clock & { advance(ms: number): void } {
  let t = start;
  return {
    now: () => new Date(t),
    advance: (ms) => {
      t += ms;
    },
  };
}

describe('RateLimiter', () => {
  it('allows a burst of perMinute, then refills continuously', () => {
    // Prepare
    const clock = fakeClock();
    const limiter = new RateLimiter(60, clock);
    // Act / Assess
    for (let i = 0; i < 60; i++) expect(limiter.take('a')).toBe(true);
    expect(limiter.take('a')).toBe(false);
    expect(limiter.take('b')).toBe(true);
    clock.advance(1000);
    expect(limiter.take('a')).toBe(true);
    expect(limiter.take('a')).toBe(false);
    clock.advance(10 * 60_000);
    for (let i = 0; i < 60; i++) expect(limiter.take('a')).toBe(true);
    expect(limiter.take('a')).toBe(false);
  });

  it('does not mint tokens when the clock steps back, and refuses all at rate 0', () => {
    // Prepare
    const clock = fakeClock(1_000_000);
    const limiter = new RateLimiter(1, clock);
    // Act / Assess
    expect(limiter.take('a')).toBe(true);
    clock.advance(-500_000);
    expect(limiter.take('a')).toBe(false);
    expect(new RateLimiter(0, clock).take('a')).toBe(false);
  });
});

describe('DeliveryDedupe', () => {
  it('sees an id once per source within the window, and stays bounded', () => {
    // Prepare
    const clock = fakeClock();
    const dedupe = new DeliveryDedupe(3, 1000, clock);
    // Act / Assess
    expect(dedupe.firstSeen('s', 'a')).toBe(true);
    expect(dedupe.firstSeen('s', 'a')).toBe(false);
    expect(dedupe.firstSeen('t', 'a')).toBe(true);
    expect(dedupe.firstSeen('s', undefined)).toBe(true);
    expect(dedupe.firstSeen('s', undefined)).toBe(true);
    clock.advance(1001);
    expect(dedupe.firstSeen('s', 'a')).toBe(true);
    for (const id of ['b', 'c', 'd', 'e']) dedupe.firstSeen('s', id);
    expect(dedupe.size).toBeLessThanOrEqual(3);
    dedupe.forget('s', 'e');
    expect(dedupe.firstSeen('s', 'e')).toBe(true);
  });
});

describe('WebhookReceiver', () => {
  it('rate-limits one source without touching another', () => {
    // Prepare
    const receiver = new WebhookReceiver({ clock: fakeClock() });
    const a = source('distribution', { id: 'a', rateLimitPerMinute: 2 });
    const b = source('distribution', { id: 'b', rateLimitPerMinute: 2 });
    const req = () =>
      request(fixture('distribution', 'push-manifest-v1.json'), { authorization: 'Bearer t' });
    // Act / Assess
    receiver.receive(a, 't', req());
    receiver.receive(a, 't', req());
    expect(errorCode(() => receiver.receive(a, 't', req()))).toBe('WEBHOOK_RATE_LIMITED');
    expect(receiver.receive(b, 't', req()).jobs).toHaveLength(1);
  });

  it("keeps failed authentications from spending the real sender's budget", () => {
    // Prepare
    const receiver = new WebhookReceiver({ clock: fakeClock() });
    const a = source('distribution', { id: 'a', rateLimitPerMinute: 2 });
    const forged = () =>
      request(fixture('distribution', 'push-manifest-v1.json'), { authorization: 'Bearer wrong' });
    // Act / Assess
    expect(errorCode(() => receiver.receive(a, 't', forged()))).toBe('WEBHOOK_UNAUTHENTICATED');
    expect(errorCode(() => receiver.receive(a, 't', forged()))).toBe('WEBHOOK_UNAUTHENTICATED');
    // The forger is now over its own budget…
    expect(errorCode(() => receiver.receive(a, 't', forged()))).toBe('WEBHOOK_RATE_LIMITED');
    // …and the genuine sender still gets through.
    const genuine = request(fixture('distribution', 'push-manifest-v1.json'), { authorization: 'Bearer t' });
    expect(receiver.receive(a, 't', genuine).jobs).toHaveLength(1);
  });

  it('acknowledges a replayed distribution event without jobs', () => {
    // Prepare
    const receiver = new WebhookReceiver();
    const src = source('distribution');
    const req = () =>
      request(fixture('distribution', 'push-manifest-v1.json'), { authorization: 'Bearer t' });
    // Act / Assess
    expect(receiver.receive(src, 't', req()).duplicate).toBe(false);
    const again = receiver.receive(src, 't', req());
    expect(again.duplicate).toBe(true);
    expect(again.jobs).toEqual([]);
  });

  it('unknown source types are refused with WEBHOOK_UNKNOWN_SOURCE', () => {
    // Prepare
    const receiver = new WebhookReceiver();
    const bogus = { ...source('distribution'), type: 'nope' as never };
    // Act / Assess
    expect(errorCode(() => receiver.receive(bogus, 't', request('{}')))).toBe('WEBHOOK_UNKNOWN_SOURCE');
  });

  it("spends a source's job budget all or none, and says when the jobs would fit", () => {
    // Prepare
    const clock = fakeClock();
    const receiver = new WebhookReceiver({ clock });
    const a = source('distribution', { id: 'a', rateLimitPerMinute: 60 });
    const b = source('distribution', { id: 'b', rateLimitPerMinute: 6000 });
    // Act / Assess: a delivery never queues more than the budget holds when full, nor more than 100.
    expect(receiver.jobsPerDelivery(a)).toBe(60);
    expect(receiver.jobsPerDelivery(b)).toBe(100);
    expect(new WebhookReceiver({ maxJobsPerDelivery: 5 }).jobsPerDelivery(b)).toBe(5);

    expect(receiver.takeJobs(a, 50)).toBeUndefined();
    // 10 tokens left, 20 wanted: none is spent, and 10 more take 10 s at 60 per minute.
    expect(receiver.takeJobs(a, 20)).toBe(10);
    expect(receiver.takeJobs(a, 10)).toBeUndefined();
    expect(receiver.takeJobs(a, 1)).toBe(1);
    expect(receiver.takeJobs(b, 100)).toBeUndefined();
    receiver.returnJobs(a, 5);
    expect(receiver.takeJobs(a, 5)).toBeUndefined();
    clock.advance(10_000);
    expect(receiver.takeJobs(a, 10)).toBeUndefined();
    expect(receiver.takeJobs(a, 1)).toBe(1);
  });

  it('checks the head of a delivery before its body, and counts failures against the forger', () => {
    // Prepare
    const receiver = new WebhookReceiver({ clock: fakeClock() });
    const a = source('distribution', { id: 'a', rateLimitPerMinute: 2 });
    const head = (authorization: string) => ({
      headers: { authorization },
      receivedAt: new Date(0),
    });
    // Act / Assess
    expect(receiver.admit(a, 't', head('Bearer t'))).toEqual({
      maxBodyBytes: 1024 * 1024,
      authenticated: true,
    });
    expect(errorCode(() => receiver.admit(a, 't', head('Bearer x')))).toBe('WEBHOOK_UNAUTHENTICATED');
    expect(errorCode(() => receiver.admit(a, 't', head('Bearer x')))).toBe('WEBHOOK_UNAUTHENTICATED');
    expect(errorCode(() => receiver.admit(a, 't', head('Bearer x')))).toBe('WEBHOOK_RATE_LIMITED');
    expect(receiver.admit(a, 't', head('Bearer t')).authenticated).toBe(true);
    const gh = source('github', { id: 'gh' });
    const signed = {
      headers: { 'x-hub-signature-256': `sha256=${'ab'.repeat(32)}` },
      receivedAt: new Date(0),
    };
    expect(receiver.admit(gh, 't', signed)).toEqual({ maxBodyBytes: 1024 * 1024, authenticated: false });
    expect(errorCode(() => receiver.admit(gh, 't', { headers: {}, receivedAt: new Date(0) }))).toBe(
      'WEBHOOK_UNAUTHENTICATED',
    );
  });
});
