/**
 * The agent's persistent state: the last accepted v1 manifest and v2 index, each as version and
 * payload hash (rollback protection across restarts), and when each no-longer-listed module was
 * first seen unlisted (the garbage-collection grace period). A state file that cannot be read
 * exactly is never guessed at: the agent stops with STATE_CORRUPT rather than forget what it
 * accepted. Format 1 (v1 only) is still read; format 2 is written.
 */
import { readFile } from 'node:fs/promises';
import { SHA256_HEX } from '../core/domain.ts';
import { WasmMirrorError } from '../core/errors.ts';
import { parseIsoTime } from '../core/manifest/index.ts';
import { parseStrictJson } from '../core/strict-json.ts';
import { writeFileAtomic } from '../platform/files.ts';

export const STATE_FORMAT = 2;
const READABLE_FORMATS = [1, 2];

export interface Accepted {
  version: number;
  payloadSha256: string;
}

export interface AgentState {
  /** Last accepted v1 manifest, if any. */
  accepted?: Accepted;
  /** Last accepted v2 index, if any. Once set, the agent never goes back to v1. */
  index?: Accepted;
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
  if (!READABLE_FORMATS.includes(d.format as number))
    throw corrupt(path, `unknown format ${String(d.format)}`);
  const fields = [
    'format',
    'version',
    'payloadSha256',
    'unlistedSince',
    ...(d.format === 2 ? ['index'] : []),
  ];
  for (const key of Object.keys(d)) {
    if (!fields.includes(key)) throw corrupt(path, `unknown field ${key}`);
  }
  const state: AgentState = { unlistedSince: {} };
  if (d.version !== undefined || d.payloadSha256 !== undefined) {
    state.accepted = acceptedOf(path, d, '');
  }
  if (d.index !== undefined) {
    if (typeof d.index !== 'object' || d.index === null || Array.isArray(d.index))
      throw corrupt(path, 'index is not an object');
    const index = d.index as Record<string, unknown>;
    for (const key of Object.keys(index)) {
      if (key !== 'version' && key !== 'payloadSha256') throw corrupt(path, `unknown field index.${key}`);
    }
    state.index = acceptedOf(path, index, 'index.');
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

function acceptedOf(path: string, d: Record<string, unknown>, where: string): Accepted {
  if (typeof d.version !== 'number' || !Number.isSafeInteger(d.version) || d.version < 0) {
    throw corrupt(path, `${where}version is not a non-negative integer`);
  }
  if (typeof d.payloadSha256 !== 'string' || !SHA256_HEX.test(d.payloadSha256)) {
    throw corrupt(path, `${where}payloadSha256 is not 64 lowercase hex`);
  }
  return { version: d.version, payloadSha256: d.payloadSha256 };
}

export async function writeState(path: string, state: AgentState): Promise<void> {
  const doc: Record<string, unknown> = { format: STATE_FORMAT };
  if (state.accepted !== undefined) {
    doc.version = state.accepted.version;
    doc.payloadSha256 = state.accepted.payloadSha256;
  }
  if (state.index !== undefined) {
    doc.index = { version: state.index.version, payloadSha256: state.index.payloadSha256 };
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
