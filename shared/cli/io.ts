import { type ParseArgsConfig, parseArgs } from 'node:util';
import { WasmMirrorError } from '../core/errors.ts';
import type { RegistryCredentials } from '../core/ports.ts';

/** Where a command reads and writes, injectable so tests can run commands in-process. */
export interface CliIo {
  stdout: { write(chunk: string): unknown; isTTY?: boolean };
  stderr: { write(chunk: string): unknown; isTTY?: boolean };
  stdin: AsyncIterable<Uint8Array | string>;
  env: Readonly<Record<string, string | undefined>>;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env };
}

/** node:util parseArgs, strict, with usage errors mapped to the USAGE code (exit 2). */
export function parseCommandArgs<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  allowPositionals = true,
) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (err) {
    throw new WasmMirrorError('USAGE', usageMessage(err, Object.keys(options)), { cause: err });
  }
}

export async function readAllStdin(io: CliIo, maxBytes = 1 << 20): Promise<string> {
  let text = '';
  for await (const chunk of io.stdin) {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (text.length > maxBytes) throw new WasmMirrorError('USAGE', 'standard input is too large');
  }
  return text;
}

/** The registry login flags of the commands that talk to a registry (`pull`, `push`). */
export const REGISTRY_LOGIN_OPTIONS = {
  username: { type: 'string', short: 'u' },
  'password-stdin': { type: 'boolean' },
} as const;

/**
 * Credentials from `--username` with the password on standard input (the two go together), else,
 * with `fromEnv`, from WASM_MIRROR_USERNAME and WASM_MIRROR_PASSWORD when both are set.
 */
export async function readRegistryLogin(
  values: { username?: string | undefined; 'password-stdin'?: boolean | undefined },
  io: CliIo,
  options: { fromEnv: boolean },
): Promise<RegistryCredentials | undefined> {
  if ((values.username !== undefined) !== (values['password-stdin'] === true)) {
    throw new WasmMirrorError('USAGE', '--username and --password-stdin go together');
  }
  if (values.username !== undefined) {
    const password = (await readAllStdin(io)).replace(/\r?\n$/, '');
    if (password === '') throw new WasmMirrorError('USAGE', 'empty password on standard input');
    return { username: values.username, password };
  }
  if (!options.fromEnv) return undefined;
  const { WASM_MIRROR_USERNAME: user, WASM_MIRROR_PASSWORD: password } = io.env;
  if (user !== undefined && user !== '' && password !== undefined) return { username: user, password };
  return undefined;
}

/**
 * parseArgs's message, shortened where it explains more than the mistake: an unknown option is
 * named, with the closest known one when it looks like a typo.
 */
function usageMessage(err: unknown, known: string[]): string {
  const message = err instanceof Error ? err.message : String(err);
  if ((err as { code?: string }).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return message;
  const option = /Unknown option '([^']+)'/.exec(message)?.[1];
  if (option === undefined) return message;
  const name = option.replace(/^-+/, '').split('=')[0]!;
  const closest = known
    .map((k) => ({ k, d: editDistance(name, k) }))
    .filter(({ k, d }) => d <= Math.max(1, Math.floor(k.length / 3)))
    .sort((a, b) => a.d - b.d)[0]?.k;
  return `unknown option '${option}'${closest === undefined ? '' : ` (did you mean --${closest}?)`}`;
}

/** Optimal string alignment distance: insertions, deletions, substitutions, adjacent swaps. */
function editDistance(a: string, b: string): number {
  let before: number[] = [];
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        row[j] = Math.min(row[j]!, before[j - 2]! + 1);
      }
    }
    before = prev;
    prev = row;
  }
  return prev[b.length]!;
}
