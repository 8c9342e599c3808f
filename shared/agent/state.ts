/**
 * The agent's persistent state: the last accepted manifest version and payload hash (rollback
 * protection across restarts) and when each no-longer-listed module was first seen unlisted (the
 * garbage-collection grace period). A state file that cannot be read exactly is never guessed
 * at: the agent stops with STATE_CORRUPT rather than forget what it accepted.
 */
import { readFile } from 'node:fs/promises';
import { SHA256_HEX } from '../core/domain.ts';
import { WasmMirrorError } from '../core/errors.ts';
import { parseIsoTime } from '../core/manifest/index.ts';
import { parseStrictJson } from '../core/strict-json.ts';
import { writeFileAtomic } from '../platform/files.ts';

export const STATE_FORMAT = 1;

export interface AgentState {
  /** Last accepted manifest, if any. */
  accepted?: { version: number; payloadSha256: string };
  /** sha256 hex → ISO time the module was first seen unlisted. */
  unlistedSince: Record<string, string>;
}

function corrupt(path: string, why: string, cause?: unknown): WasmMirrorError {
  return new WasmMirrorError(
    'STATE_CORRUPT',
    `agent state ${path} is unreadable (${why}); refusing to continue. Inspect it, and delete it only if you accept that the next manifest is trusted without rollback protection`,
    { cause },
  );
}

export async function readState(path: string): Promise<AgentState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { unlistedSince: {} };
    throw corrupt(path, String(err), err);
  }
  let doc: unknown;
  try {
    doc = parseStrictJson(text, { maxDepth: 4 });
  } catch (err) {
    throw corrupt(path, err instanceof Error ? err.message : String(err), err);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw corrupt(path, 'not an object');
  const d = doc as Record<string, unknown>;
  if (d.format !== STATE_FORMAT) throw corrupt(path, `unknown format ${String(d.format)}`);
  for (const key of Object.keys(d)) {
    if (!['format', 'version', 'payloadSha256', 'unlistedSince'].includes(key))
      throw corrupt(path, `unknown field ${key}`);
  }
  const state: AgentState = { unlistedSince: {} };
  if (d.version !== undefined || d.payloadSha256 !== undefined) {
    if (typeof d.version !== 'number' || !Number.isSafeInteger(d.version) || d.version < 0) {
      throw corrupt(path, 'version is not a non-negative integer');
    }
    if (typeof d.payloadSha256 !== 'string' || !SHA256_HEX.test(d.payloadSha256)) {
      throw corrupt(path, 'payloadSha256 is not 64 lowercase hex');
    }
    state.accepted = { version: d.version, payloadSha256: d.payloadSha256 };
  }
  const unlisted = d.unlistedSince ?? {};
  if (typeof unlisted !== 'object' || unlisted === null || Array.isArray(unlisted))
    throw corrupt(path, 'bad unlistedSince');
  for (const [hex, since] of Object.entries(unlisted)) {
    if (!SHA256_HEX.test(hex) || typeof since !== 'string' || parseIsoTime(since) === undefined) {
      throw corrupt(path, `bad unlistedSince entry ${hex}`);
    }
    state.unlistedSince[hex] = since;
  }
  return state;
}

export async function writeState(path: string, state: AgentState): Promise<void> {
  const doc: Record<string, unknown> = { format: STATE_FORMAT };
  if (state.accepted !== undefined) {
    doc.version = state.accepted.version;
    doc.payloadSha256 = state.accepted.payloadSha256;
  }
  doc.unlistedSince = state.unlistedSince;
  await writeFileAtomic(path, `${JSON.stringify(doc, null, 2)}\n`, 0o600);
}

/** The state file as this process knows it: read on first use, written through on every change. */
export class StateFile {
  readonly path: string;
  #state: AgentState | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /** The state; a file that cannot be read is tried again on the next call. */
  async read(): Promise<AgentState> {
    this.#state ??= await readState(this.path);
    return this.#state;
  }

  async write(next: AgentState): Promise<void> {
    await writeState(this.path, next);
    this.#state = next;
  }
}
