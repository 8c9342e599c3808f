/** The `wasm-mirror` command as the tests drive it: in-process, or the installed bin. */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { CliIo } from '../../shared/cli/io.ts';
import { main } from '../../shared/cli/main.ts';

export interface RunCliOptions {
  /** The whole environment the command sees (never process.env); empty by default. */
  env?: Record<string, string>;
  /** Standard input, read as one chunk; empty by default. */
  stdin?: string | Uint8Array;
  /** Whether stderr claims to be a terminal (where `pull` prints progress); false by default. */
  tty?: boolean;
}

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/**
 * Runs `wasm-mirror ...argv` through `main` with in-memory I/O: the exit code and everything
 * written to stdout and stderr. Neither stream is a terminal unless `tty` says stderr is.
 */
export async function runCli(argv: string[], options: RunCliOptions = {}): Promise<CliRun> {
  const { env = {}, stdin, tty = false } = options;
  let out = '';
  let err = '';
  const io: CliIo = {
    stdout: { write: (s: string) => (out += s), isTTY: false },
    stderr: { write: (s: string) => (err += s), isTTY: tty },
    stdin: (async function* () {
      if (stdin !== undefined) yield stdin;
    })(),
    env,
  };
  const code = await main(argv, io);
  return { code, out, err };
}

/** The installed bin, `bin/wasm-mirror.mjs`, run as its own Node process (with this process's environment). */
export async function runBin(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
      encoding: 'utf8',
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'wasm-mirror.mjs');
