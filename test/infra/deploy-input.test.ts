/**
 * What `cdk deploy` refuses before it builds anything: no config (the example would create
 * secrets for made-up registries), a config with a bad key, and sources Lambda cannot reach. Each
 * refusal is one line naming what to fix, printed by infra/bin/app.ts without a stack trace.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../infra/lib/paths.ts';
import { synthApp, writeConfig } from './helpers.ts';

const refusal = (context: Record<string, unknown>): string => {
  try {
    synthApp(context);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error('the app was synthesized');
};

const source = (fields: string) =>
  writeConfig(
    `mirror: { name: local }\nsources:\n  - { id: reg, type: distribution, repositories: ["**"], webhookSecretEnv: HOOK, ${fields} }\n`,
  );

describe('deployment input', () => {
  it('refuses to synthesize without -c config, saying how to pass one', () => {
    // Act
    const message = refusal({ config: undefined });
    // Assess
    expect(message).toMatch(/^no mirror config given: pass one with `-c config=[^`]+`/);
    expect(message).not.toContain('\n');
    expect(refusal({ config: '' })).toMatch(/-c config=/);
  });

  it('names the key at fault, in one line', () => {
    // Act
    const message = refusal({ config: writeConfig('mirror: { name: x, manifestTl: 4h }\n') });
    // Assess
    expect(message).toMatch(/mirror\.manifestTl is not a known key/);
    expect(message).not.toContain('\n');
    expect(refusal({ config: join(tmpdir(), 'no-such-dir', 'mirror.yaml') })).toMatch(
      /^cannot read config file .*mirror\.yaml \(-c config\)/,
    );
    expect(refusal({ mirrorConcurrency: 'lots' })).toBe(
      '-c mirrorConcurrency must be an integer from 2 to 1000, got lots',
    );
  });

  it('refuses a source on this machine or with insecure: true, which Lambda cannot pull from', () => {
    // Act / Assess
    for (const registry of [
      '127.0.0.1:5000',
      'localhost:5000',
      'LOCALHOST',
      'registry.localhost',
      '[::1]:5000',
    ]) {
      expect(refusal({ config: source(`registry: "${registry}"`) }), registry).toMatch(
        /sources\[0\]\.registry .* is a loopback address/,
      );
    }
    expect(refusal({ config: source('registry: "registry.example.com", insecure: true') })).toMatch(
      /sources\[0\]\.insecure is true; the AWS pipeline pulls over HTTPS only/,
    );
    // A registry on the internet (or in a VPC) is fine.
    expect(() => synthApp({ config: source('registry: "registry.example.com:5000"') })).not.toThrow();
  });

  it('refuses a publish interval the publish function could not wait out within its timeout', () => {
    // Prepare
    const withInterval = (interval: string) =>
      writeConfig(`mirror: { name: x, publishInterval: ${interval} }\nsources: []\n`);
    // Act / Assess
    expect(refusal({ config: withInterval('45s') })).toMatch(
      /mirror\.publishInterval is 45s; .* at most 30s in AWS/,
    );
    expect(() => synthApp({ config: withInterval('10s') })).not.toThrow();
  });

  it('prints one line and exits 1 from the CDK app, without a stack trace', {
    timeout: 240_000,
  }, async () => {
    // Prepare
    const run = (context: Record<string, unknown>) =>
      new Promise<{ status: number | null; lines: string[] }>((resolve) => {
        execFile(
          join(REPO_ROOT, 'node_modules', '.bin', 'tsx'),
          ['infra/bin/app.ts'],
          {
            cwd: REPO_ROOT,
            encoding: 'utf8',
            timeout: 200_000,
            // How the CDK CLI hands the app its context and output directory.
            env: {
              ...process.env,
              CDK_CONTEXT_JSON: JSON.stringify(context),
              CDK_OUTDIR: mkdtempSync(join(tmpdir(), 'infra-refusal-')),
            },
          },
          (err, _stdout, stderr) =>
            resolve({
              status: err ? (typeof err.code === 'number' ? err.code : null) : 0,
              lines: stderr.split('\n').filter((l) => l.trim() !== ''),
            }),
        );
      });
    const cases = [
      [{}, /^wasm-mirror: no mirror config given: pass one with `-c config=/],
      [
        { config: writeConfig('mirror: { name: x, manifestTl: 4h }\n') },
        /mirror\.manifestTl is not a known key/,
      ],
      [{ config: source('registry: "127.0.0.1:5000", insecure: true') }, /sources\[0\]\.insecure is true/],
    ] as const;
    // Act
    const results = await Promise.all(cases.map(([context]) => run(context)));
    // Assess
    results.forEach(({ status, lines }, i) => {
      expect(status, lines.join('\n')).toBe(1);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(cases[i]![1]);
    });
  });
});
