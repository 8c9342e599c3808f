/**
 * The `wasm-mirror` command. Each subcommand lives in `commands/<name>.ts` and exports
 * `run(argv, io)`; it returns the exit code: 0 success, 1 verification or mirror failure (the
 * error code printed), 2 usage.
 */
import { isWasmMirrorError, toWasmMirrorError } from '../core/errors.ts';
import type { CliIo } from './io.ts';
import { processIo } from './io.ts';

type Command = { summary: string; load: () => Promise<{ run(argv: string[], io: CliIo): Promise<number> }> };

const commands: Record<string, Command> = {
  serve: {
    summary: 'run the embedded mirror (webhooks, queue, publisher, HTTP)',
    load: () => import('./commands/serve.ts'),
  },
  mirror: {
    summary: 'mirror one reference now, no webhook needed',
    load: () => import('./commands/mirror.ts'),
  },
  'dead-letters': {
    summary: 'list, show, redrive or purge the jobs that used up their retries',
    load: () => import('./commands/dead-letters.ts'),
  },
  pull: {
    summary: 'pull and extract one module to a file, print its sha256',
    load: () => import('./commands/pull.ts'),
  },
  push: {
    summary: 'package a module the way Istio loads it and push it to a registry',
    load: () => import('./commands/push.ts'),
  },
  agent: {
    summary: 'verify the signed manifest and sync modules into a directory',
    load: () => import('./commands/agent.ts'),
  },
  verify: {
    summary: 'verify a manifest envelope offline and print it',
    load: () => import('./commands/verify.ts'),
  },
  wasmplugin: {
    summary: 'print an Istio WasmPlugin pinned to the mirror',
    load: () => import('./commands/wasmplugin.ts'),
  },
  keygen: {
    summary: 'make a P-256 key pair for embedded signing',
    load: () => import('./commands/keygen.ts'),
  },
};

export function usage(): string {
  const width = Math.max(...Object.keys(commands).map((name) => name.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: wasm-mirror <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nRun 'wasm-mirror <command> --help' for a command's options.\n`;
}

export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    (name === undefined ? io.stderr : io.stdout).write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    io.stderr.write(`wasm-mirror: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    const mod = await command.load();
    return await mod.run(rest, io);
  } catch (err) {
    const e = toWasmMirrorError(err);
    const usage = isWasmMirrorError(err, 'USAGE');
    // A usage error points at the command's help, unless the message already carries it.
    const hint =
      usage && !e.message.includes('usage:') ? `\nRun 'wasm-mirror ${name} --help' for its options.` : '';
    io.stderr.write(`wasm-mirror ${name}: ${e.code}: ${e.message}${hint}\n`);
    return usage ? 2 : 1;
  }
}
