import { type ParseArgsConfig, parseArgs } from 'node:util';
import { WasmMirrorError } from '../core/errors.ts';

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
    throw new WasmMirrorError('USAGE', err instanceof Error ? err.message : String(err), { cause: err });
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
