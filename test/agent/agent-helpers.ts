/** What the agent suites share: a fixed clock, a snapshot of what proxies read, an error's code. */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWasmMirrorError } from '../../shared/core/errors.ts';
import { sha256Hex } from '../manifest/helpers.ts';

export const fixedClock = (at: Date) => ({ now: () => at });

/**
 * Every file under dir with its sha256, but the state file (which records new versions and GC
 * times even when a sync fails): what proxies and agents below could read.
 */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, prefix: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name), `${prefix}${e.name}/`);
      else if (e.name !== 'agent-state.json')
        out[`${prefix}${e.name}`] = sha256Hex(readFileSync(join(d, e.name)));
    }
  };
  walk(dir, '');
  return out;
}

/** Only the module files of a snapshot. */
export function moduleFiles(snap: Record<string, string>): string[] {
  return Object.keys(snap).filter((k) => k.startsWith('modules/'));
}

export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (isWasmMirrorError(err)) return err.code;
    throw err;
  }
  return 'OK';
}
