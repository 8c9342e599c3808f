/**
 * The programs the tests run: `npm test` checks them first (bin/check-tools.mjs) and stops with
 * one message naming what is missing and how to install it; the list there, the tests and the
 * README agree; tests find programs on PATH, never at a fixed location.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain .mjs script, without type declarations
import { missingToolsMessage, OPTIONAL_TEST_TOOLS, TEST_TOOLS } from '../../bin/check-tools.mjs';

const ROOT = join(import.meta.dirname, '..', '..');
const tools = TEST_TOOLS as { tool: string; pkg: string }[];
const optional = (OPTIONAL_TEST_TOOLS as { tool: string }[]).map((t) => t.tool);

/** Programs every machine that runs the tests has: Node itself and Debian's essential packages. */
const BASE = new Set(['node', 'npm', 'npx', 'sh', 'bash', 'sync', 'tar', 'mount', 'umount']);

function testSources(dir = join(ROOT, 'test')): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

/** Names passed as the program to spawn / execFile / execFileSync … in the tests. */
function programsSpawned(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  const call =
    /\b(?:spawn|spawnSync|execFile|execFileSync|execFileAsync|exec|execSync)\(\s*(['"`])([^'"`]+)\1/g;
  for (const file of testSources()) {
    for (const m of readFileSync(file, 'utf8').matchAll(call)) {
      const program = m[2]!;
      found.set(program, [...(found.get(program) ?? []), relative(ROOT, file)]);
    }
  }
  return found;
}

describe('the tools the tests need', () => {
  it('stops with one message naming every missing tool and the apt-get command', () => {
    // Prepare
    const empty = mkdtempSync(join(tmpdir(), 'wm-no-tools-'));
    try {
      // Act: an empty PATH; Node is started by its full path, none of the tools is found.
      const r = spawnSync(process.execPath, [join(ROOT, 'bin', 'check-tools.mjs')], {
        env: { PATH: empty },
        encoding: 'utf8',
      });
      // Assess
      expect(r.status).toBe(1);
      expect(r.stdout).toBe('');
      for (const { tool } of tools) expect(r.stderr).toContain(tool);
      expect(r.stderr).toMatch(
        /apt-get install -y --no-install-recommends docker-registry skopeo wabt apache2-utils openssl\n/,
      );
      expect(r.stderr).not.toMatch(/\bat .*\.mjs:\d+/); // a message, not a stack
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('names only what is missing, and says nothing when all are there', () => {
    // Act
    const message = missingToolsMessage('/nonexistent', true) as string;
    // Assess
    expect(message.startsWith('npm test needs programs that are not on PATH:')).toBe(true);
    expect(message).toContain('  apt-get update && apt-get install');
    expect(missingToolsMessage('/nonexistent', false)).toContain('sudo apt-get install');
    // This machine runs the integration suites, so it has them all.
    expect(missingToolsMessage()).toBeUndefined();
  });

  it('lists every program the tests spawn', () => {
    // Act
    const listed = new Set([...tools.map((t) => t.tool), ...optional]);
    const unlisted = [...programsSpawned()].filter(([p]) => !listed.has(p) && !BASE.has(p));
    // Assess
    expect(unlisted, 'add them to TEST_TOOLS in bin/check-tools.mjs and to the README').toEqual([]);
    // And the list holds nothing the tests no longer run.
    const spawned = programsSpawned();
    for (const { tool } of tools) expect(spawned.has(tool), tool).toBe(true);
  });

  it('finds programs on PATH, never at a fixed location', () => {
    const absolute = [...programsSpawned()].filter(([p]) => p.startsWith('/'));
    expect(absolute).toEqual([]);
  });

  it('the README names every tool and its package', () => {
    // Act
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    // Assess
    for (const { tool, pkg } of tools) {
      expect(readme, tool).toContain(`\`${tool}\``);
      expect(readme, pkg).toContain(pkg);
    }
    for (const tool of optional) expect(readme, tool).toContain(`\`${tool}\``);
  });

  it('.ci/run installs every package', () => {
    // Act
    const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
    const install = /apt-get install[^\n]*/.exec(ci)?.[0] ?? '';
    // Assess
    for (const { tool, pkg } of tools) {
      expect(install, pkg).toContain(` ${pkg}`);
      expect(ci, tool).toMatch(new RegExp(`need=\\([^)]*\\b${tool}\\b`));
    }
  });
});
