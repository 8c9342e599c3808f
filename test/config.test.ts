import { describe, expect, it } from 'vitest';
import { parseConfig, parseSize } from '../shared/core/config.ts';
import { parseDuration } from '../shared/core/duration.ts';
import { WasmMirrorError } from '../shared/core/errors.ts';

const valid = `
mirror:
  name: prod-mesh
  manifestTtl: 48h
sources:
  - id: local
    type: distribution
    registry: 127.0.0.1:5000
    insecure: true
    repositories: ["plugins/**"]
    webhookSecretEnv: LOCAL_HOOK_TOKEN
    credentials: { usernameEnv: REG_USER, passwordEnv: REG_PASS }
`;

function errorOf(text: string): WasmMirrorError {
  try {
    parseConfig(text);
  } catch (err) {
    if (err instanceof WasmMirrorError) return err;
    throw err;
  }
  throw new Error('expected an error');
}

describe('config', () => {
  it('parses the documented example into a frozen, typed object', () => {
    // Act
    const config = parseConfig(valid);
    // Assess
    expect(config.mirror).toEqual({
      name: 'prod-mesh',
      manifestTtlMs: 48 * 3600_000,
      resignBeforeMs: 24 * 3600_000,
      maxModuleBytes: 256 * 1024 * 1024,
      legacyManifest: true,
      publishIntervalMs: 2000,
      gcGraceMs: 24 * 3600_000,
    });
    expect(config.sources[0]).toMatchObject({
      id: 'local',
      type: 'distribution',
      registry: '127.0.0.1:5000',
      insecure: true,
      repositories: ['plugins/**'],
      webhookSecretEnv: 'LOCAL_HOOK_TOKEN',
      credentials: { usernameEnv: 'REG_USER', passwordEnv: 'REG_PASS' },
    });
    expect(Object.isFrozen(config.sources[0])).toBe(true);
    expect(() => {
      (config.mirror as { name: string }).name = 'x';
    }).toThrow();
  });

  it('accepts JSON and an empty file', () => {
    expect(parseConfig('{"mirror":{"name":"j"}}').mirror.name).toBe('j');
    expect(parseConfig('').sources).toEqual([]);
  });

  it.each([
    ['mirror:\n  nmae: x', 'mirror.nmae is not a known key'],
    [
      'sources:\n  - id: a\n    type: distribution\n    registry: r.io\n    repositories: ["**"]\n    webhookSecretEnv: S\n    insecrue: true',
      'sources[0].insecrue is not a known key',
    ],
    [
      'sources:\n  - id: a\n    type: gitlab\n    registry: r.io\n    repositories: ["**"]\n    webhookSecretEnv: S',
      'sources[0].type must be one of',
    ],
    [
      'sources:\n  - id: a\n    type: distribution\n    registry: http://r.io/x\n    repositories: ["**"]\n    webhookSecretEnv: S',
      'sources[0].registry has an invalid value',
    ],
    [
      'sources:\n  - id: a\n    type: distribution\n    registry: r.io\n    repositories: []\n    webhookSecretEnv: S',
      'sources[0].repositories must be a non-empty list',
    ],
    [
      'sources:\n  - id: a\n    type: distribution\n    registry: r.io\n    repositories: ["**"]',
      'sources[0].webhookSecretEnv is required',
    ],
    [
      'sources:\n  - id: a\n    type: distribution\n    registry: r.io\n    repositories: ["**"]\n    webhookSecretEnv: S\n    insecure: "yes"',
      'sources[0].insecure must be true or false',
    ],
    ['mirror:\n  manifestTtl: soon', 'mirror.manifestTtl must be a duration'],
    ['mirror:\n  manifestTtl: 1h\n  resignBefore: 2h', 'mirror.resignBefore must be shorter'],
    ['mirror:\n  name: x\n  name: y', 'not valid YAML or JSON'],
    ['mirror: [1, 2]', 'mirror must be a mapping'],
    [
      'sources:\n  - id: Bad/Id\n    type: distribution\n    registry: r.io\n    repositories: ["**"]\n    webhookSecretEnv: S',
      'sources[0].id has an invalid value',
    ],
  ])('names the key in %j', (text, message) => {
    // Act
    const err = errorOf(text);
    // Assess
    expect(err.code).toBe('CONFIG_INVALID');
    expect(err.message).toContain(message);
  });

  it('refuses duplicate source ids', () => {
    // Prepare
    const source =
      '  - id: a\n    type: distribution\n    registry: r.io\n    repositories: ["**"]\n    webhookSecretEnv: S\n';
    // Act / Assess
    expect(errorOf(`sources:\n${source}${source}`).message).toContain(
      "sources[1].id duplicate source id 'a'",
    );
  });

  it('refuses alias bombs', () => {
    const bomb = `a: &a ["x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nmirror: {name: [*c,*c,*c]}`;
    expect(errorOf(bomb).code).toBe('CONFIG_INVALID');
  });

  it('parses durations and sizes', () => {
    // Act / Assess
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
    expect(parseDuration('2d')).toBe(172_800_000);
    expect(parseDuration('1.5h')).toBe(5_400_000);
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30')).toBeUndefined();
    expect(parseDuration('30', { bareUnit: 's' })).toBe(30_000);
    expect(parseDuration(1500)).toBe(1500);
    expect(parseDuration('1x')).toBeUndefined();
    expect(parseDuration('')).toBeUndefined();
    expect(parseSize('256MiB')).toBe(268_435_456);
    expect(parseSize('10MB')).toBe(10_000_000);
    expect(parseSize('-1')).toBeUndefined();
  });
});
