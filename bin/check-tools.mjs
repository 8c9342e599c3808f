#!/usr/bin/env node
// Runs first in `npm test`: the integration suites start these programs, and without them a run
// fails in many files at once with `spawn … ENOENT`. One message instead, naming what is missing
// and the command that installs it. Tools are looked up on PATH, as the tests run them.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Every program the tests run, with the Debian package that provides it. */
export const TEST_TOOLS = [
  {
    tool: 'docker-registry',
    pkg: 'docker-registry',
    why: 'the CNCF Distribution registry the tests push to',
  },
  { tool: 'skopeo', pkg: 'skopeo', why: 'pushes test artifacts in every packaging' },
  { tool: 'wat2wasm', pkg: 'wabt', why: 'builds the test modules' },
  { tool: 'htpasswd', pkg: 'apache2-utils', why: "the registry's Basic-auth users" },
  { tool: 'openssl', pkg: 'openssl', why: 'checks signatures independently of Node' },
];

/** Programs a test uses when they are on PATH and skips its check without: never required. */
export const OPTIONAL_TEST_TOOLS = [];

/** Absolute path of `name` on PATH, or undefined. */
export function onPath(name, path = process.env.PATH ?? '') {
  for (const dir of path.split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** The message for the missing tools, or undefined when all are there. */
export function missingToolsMessage(path = process.env.PATH ?? '', isRoot = process.getuid?.() === 0) {
  const missing = TEST_TOOLS.filter((t) => onPath(t.tool, path) === undefined);
  if (missing.length === 0) return undefined;
  const packages = [...new Set(missing.map((t) => t.pkg))].join(' ');
  const rows = missing.map(
    (t) => `  ${t.tool.padEnd(16)} ${`(Debian package ${t.pkg})`.padEnd(32)} ${t.why}`,
  );
  return [
    `npm test needs ${missing.length === 1 ? 'a program' : 'programs'} that ${missing.length === 1 ? 'is' : 'are'} not on PATH:`,
    ...rows,
    '',
    'Install on Debian or Ubuntu with:',
    `  ${isRoot ? '' : 'sudo '}apt-get update && ${isRoot ? '' : 'sudo '}apt-get install -y --no-install-recommends ${packages}`,
    '',
    'or run `bash .ci/run`, which installs them and then runs npm ci and npm test.',
    '',
  ].join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const message = missingToolsMessage();
  if (message !== undefined) {
    process.stderr.write(message);
    process.exit(1);
  }
}
