import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  moduleSelector,
  parseDuration,
  readState,
  selectionNames,
  writeState,
} from '../../shared/agent/index.ts';
import type { ManifestModule } from '../../shared/core/domain.ts';
import { isWasmMirrorError } from '../../shared/core/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'wm-units-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const mod = (name: string, tag: string) => ({ name, tag }) as ManifestModule;

describe('--select globs', () => {
  const modules = [
    mod('ghcr.io/acme/auth', '1.2.0'),
    mod('ghcr.io/acme/team/ratelimit', '2.0.0'),
    mod('127.0.0.1:5000/p/x', '1'),
  ];
  const pick = (globs: string[]) => modules.filter(moduleSelector(globs)).map((m) => m.name);

  it('keeps * within a segment, ** across, and matches tags after a colon', () => {
    // Act
    const picked = {
      all: pick([]),
      star: pick(['ghcr.io/acme/*']),
      globstar: pick(['ghcr.io/**']),
      tagged: pick(['ghcr.io/**:2.*']),
      question: pick(['127.0.0.1:5000/p/?']),
      prefix: pick(['ghcr.io/acme/au']),
    };

    // Assess
    expect(picked.all).toHaveLength(3);
    expect(picked.star).toEqual(['ghcr.io/acme/auth']);
    expect(picked.globstar).toEqual(['ghcr.io/acme/auth', 'ghcr.io/acme/team/ratelimit']);
    expect(picked.tagged).toEqual(['ghcr.io/acme/team/ratelimit']);
    expect(picked.question).toEqual(['127.0.0.1:5000/p/x']);
    expect(picked.prefix).toEqual([]);
  });

  it('reads ** as zero or more segments, as the config allow-lists do', () => {
    // Prepare
    const plugins = [mod('plugins/auth', '1'), mod('plugins/team/a/auth', '1'), mod('plugins', '1')];
    const select = (glob: string) => plugins.filter(moduleSelector([glob])).map((m) => m.name);

    // Act
    const middle = select('plugins/**/auth');
    const trailing = select('plugins/**');
    const taggedMiddle = select('plugins/**/auth:1');

    // Assess
    expect(middle).toEqual(['plugins/auth', 'plugins/team/a/auth']);
    expect(trailing).toEqual(['plugins/auth', 'plugins/team/a/auth', 'plugins']);
    expect(taggedMiddle).toEqual(['plugins/auth', 'plugins/team/a/auth']);
  });

  it('matches nothing for an empty name or tag pattern instead of throwing', () => {
    // Act
    const picked = [pick(['ghcr.io/acme/auth:']), pick([':1.2.0']), pick([''])];

    // Assess
    expect(picked).toEqual([[], [], []]);
  });
});

describe('which bins a selection needs', () => {
  it('maps names without a wildcard to themselves, whatever their tag pattern', () => {
    // Act
    const exact = selectionNames(['ghcr.io/acme/auth', 'ghcr.io/acme/auth:1.*', '127.0.0.1:5000/p/x:latest']);
    const emptyName = selectionNames([':1.0', 'ghcr.io/acme/auth']);

    // Assess
    expect(exact).toEqual({ all: false, names: ['127.0.0.1:5000/p/x', 'ghcr.io/acme/auth'] });
    expect(emptyName).toEqual({ all: false, names: ['ghcr.io/acme/auth'] });
  });

  it('needs every bin for no globs or any wildcard in a name, never guessing at a pattern', () => {
    // Act
    const cases = [
      [],
      ['ghcr.io/acme/*'],
      ['ghcr.io/**:1.0'],
      ['ghcr.io/acme/a?th'],
      ['ghcr.io/{a,b}/x'],
      ['./x'],
    ];

    // Assess
    for (const globs of cases) expect(selectionNames(globs), globs.join()).toEqual({ all: true });
  });
});

describe('durations', () => {
  it('reads ms, s, m, h, d, compound and fractional durations and bare seconds', () => {
    // Prepare
    const cases: [string, number][] = [
      ['30s', 30_000],
      ['500ms', 500],
      ['5m', 300_000],
      ['24h', 86_400_000],
      ['10', 10_000],
      ['1h30m', 5_400_000],
      ['2d', 172_800_000],
      ['1.5h', 5_400_000],
    ];

    // Act
    const parsed = cases.map(([text]) => parseDuration(text, '--interval'));

    // Assess
    expect(parsed).toEqual(cases.map(([, ms]) => ms));
  });

  it('refuses the rest with a USAGE error naming the flag', () => {
    // Prepare
    const bad = ['', '0s', '-1s', '1w', 'soon', '1h 30m'];

    // Act
    const errors = bad.map((text) => {
      try {
        parseDuration(text, '--interval');
        return undefined;
      } catch (err) {
        return err;
      }
    });

    // Assess
    for (const [i, err] of errors.entries()) {
      expect(isWasmMirrorError(err, 'USAGE'), bad[i]).toBe(true);
      expect((err as Error).message, bad[i]).toMatch(/--interval/);
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
    const withIndex = { ...state, index: { version: 8, payloadSha256: 'c'.repeat(64) } };
    await writeState(path, withIndex);
    expect(await readState(path)).toEqual(withIndex);
    // A state file written before v2 (format 1) is still read.
    writeFileSync(path, `{"format":1,"version":7,"payloadSha256":"${'a'.repeat(64)}","unlistedSince":{}}`);
    expect(await readState(path)).toEqual({ accepted: state.accepted, unlistedSince: {} });
    const corrupt = [
      '',
      '{',
      '{"format":3}',
      '{"format":1,"version":7}',
      '{"format":1,"version":7,"payloadSha256":"A"}',
      '{"format":1,"version":-1,"payloadSha256":"' + 'a'.repeat(64) + '"}',
      '{"format":1,"unlistedSince":{"x":"2026-01-01T00:00:00Z"}}',
      '{"format":1,"extra":true}',
      `{"format":1,"index":{"version":8,"payloadSha256":"${'c'.repeat(64)}"}}`,
      '{"format":2,"index":{"version":8}}',
      `{"format":2,"index":{"version":8,"payloadSha256":"${'c'.repeat(64)}","x":1}}`,
    ];
    for (const text of corrupt) {
      writeFileSync(path, text);
      const err = await readState(path).catch((e: unknown) => e);
      expect(isWasmMirrorError(err, 'STATE_CORRUPT'), text).toBe(true);
    }
  });
});
