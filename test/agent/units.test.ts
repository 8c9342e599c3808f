import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { moduleSelector, parseDuration, readState, writeState } from '../../shared/agent/index.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'wm-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mod = (name: string, tag: string) => ({ name, tag }) as ManifestModule;

describe('--select globs', () => {
  it('keeps * within a segment, ** across, and matches tags after a colon', () => {
    const pick = (globs: string[]) =>
      [
        mod('ghcr.io/acme/auth', '1.2.0'),
        mod('ghcr.io/acme/team/ratelimit', '2.0.0'),
        mod('127.0.0.1:5000/p/x', '1'),
      ]
        .filter(moduleSelector(globs))
        .map((m) => m.name);
    expect(pick([])).toHaveLength(3);
    expect(pick(['ghcr.io/acme/*'])).toEqual(['ghcr.io/acme/auth']);
    expect(pick(['ghcr.io/**'])).toEqual(['ghcr.io/acme/auth', 'ghcr.io/acme/team/ratelimit']);
    expect(pick(['ghcr.io/**:2.*'])).toEqual(['ghcr.io/acme/team/ratelimit']);
    expect(pick(['127.0.0.1:5000/p/?'])).toEqual(['127.0.0.1:5000/p/x']);
    expect(pick(['ghcr.io/acme/au'])).toEqual([]);
  });
});

describe('durations', () => {
  it('reads ms, s, m, h and bare seconds, and refuses the rest', () => {
    expect(parseDuration('30s', '--interval')).toBe(30_000);
    expect(parseDuration('500ms', '--interval')).toBe(500);
    expect(parseDuration('5m', '--interval')).toBe(300_000);
    expect(parseDuration('24h', '--gc-grace')).toBe(86_400_000);
    expect(parseDuration('10', '--interval')).toBe(10_000);
    for (const bad of ['', '0s', '-1s', '1d', 'soon']) {
      expect(() => parseDuration(bad, '--interval'), bad).toThrow(/--interval/);
    }
  });
});

describe('agent state', () => {
  it('round-trips, is private, and fails closed on anything unexpected', async () => {
    const path = join(dir, 'state.json');
    expect(await readState(path)).toEqual({ unlistedSince: {} });
    const state = {
      accepted: { version: 7, payloadSha256: 'a'.repeat(64) },
      unlistedSince: { ['b'.repeat(64)]: '2026-01-01T00:00:00.000Z' },
    };
    await writeState(path, state);
    expect(await readState(path)).toEqual(state);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const corrupt = [
      '',
      '{',
      '{"format":2}',
      '{"format":1,"version":7}',
      '{"format":1,"version":7,"payloadSha256":"A"}',
      '{"format":1,"version":-1,"payloadSha256":"' + 'a'.repeat(64) + '"}',
      '{"format":1,"unlistedSince":{"x":"2026-01-01T00:00:00Z"}}',
      '{"format":1,"extra":true}',
    ];
    for (const text of corrupt) {
      writeFileSync(path, text);
      const err = await readState(path).catch((e: unknown) => e);
      expect(isWasmMirrorError(err, 'STATE_CORRUPT'), text).toBe(true);
    }
  });
});
