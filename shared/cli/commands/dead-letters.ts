/**
 * `wasm-mirror dead-letters list|show|redrive|purge`: the operator's view of the embedded
 * mirror's dead letters, working on the data directory directly (with or without a server). A
 * redrive is a rename into the queue's ready/ directory, as a send is, so a server running on the
 * same directory picks the message up on its next poll.
 */
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type DeadLetter, DiskQueue } from '../../adapters/local/disk-queue.ts';
import { parseDuration } from '../../core/duration.ts';
import { WasmMirrorError } from '../../core/errors.ts';
import { dataPaths } from '../../embedded/runtime.ts';
import { errnoCode } from '../../platform/files.ts';
import { DEFAULT_DATA_DIR } from '../config-file.ts';
import { type CliIo, parseCommandArgs } from '../io.ts';

const HELP = `usage: wasm-mirror dead-letters <action> [options]

Dead letters are queued jobs that used up their deliveries, each kept with the error of its
last one; the server deletes them after 14 days by default. This command works on the data
directory directly, with or without a server running on it; a server picks redriven jobs up
on its next poll.

actions:
  list                          the dead letters, newest first, one page at a time
  show <id>                     one dead letter in full, as JSON
  redrive <id>... | --all       put them back on their queue with a fresh attempt count
  purge <id>... | --all | --older-than DURATION
                                delete them for good

options:
  --data DIR               data directory (default ${DEFAULT_DATA_DIR})
  --queue NAME             mirror (the default: mirror jobs) or publish (publish requests)
  --limit N                list: dead letters per page, 1 to 1000 (default 20)
  --cursor ID              list: the page after this id (the cursor a previous page printed)
  --all                    redrive, purge: every dead letter of the queue
  --older-than DURATION    purge: those that died more than DURATION ago, e.g. 7d, 12h, 30m
  --json                   print JSON instead of text
  -h, --help               this help

exit status: 0 done; 1 a named dead letter, or the queue itself, does not exist (NOT_FOUND);
2 bad usage (USAGE).
`;

const ACTIONS = ['list', 'show', 'redrive', 'purge'] as const;
type Action = (typeof ACTIONS)[number];
const QUEUES = ['mirror', 'publish'] as const;
type QueueName = (typeof QUEUES)[number];
const MESSAGE_ID = /^\d{15}-[0-9a-f]{8}-[0-9a-f]{6}$/;

export async function run(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(argv, {
    data: { type: 'string', default: DEFAULT_DATA_DIR },
    queue: { type: 'string', default: 'mirror' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    all: { type: 'boolean', default: false },
    'older-than': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const [actionArg, ...ids] = positionals;
  if (actionArg === undefined) throw usage('give an action: list, show, redrive or purge');
  if (!(ACTIONS as readonly string[]).includes(actionArg)) throw usage(`unknown action '${actionArg}'`);
  const action = actionArg as Action;
  if (!(QUEUES as readonly string[]).includes(values.queue)) {
    throw usage(`--queue must be mirror or publish, not '${values.queue}'`);
  }
  const queueName = values.queue as QueueName;
  for (const id of ids) {
    if (!MESSAGE_ID.test(id))
      throw usage(`'${id}' is not a dead letter id (ids look like 001796010236103-0000890d-caf142)`);
  }
  checkFlags(action, values, ids);

  const queue = await openQueue(resolve(values.data), queueName);
  const out = (text: string) => io.stdout.write(text);
  switch (action) {
    case 'list': {
      const limit = values.limit === undefined ? 20 : Number(values.limit);
      if (!/^\d{1,4}$/.test(values.limit ?? '20') || limit < 1 || limit > 1000) {
        throw usage('--limit must be a whole number from 1 to 1000');
      }
      if (values.cursor !== undefined && !MESSAGE_ID.test(values.cursor)) {
        throw usage(`--cursor '${values.cursor}' is not a dead letter id`);
      }
      const page = await queue.listDeadPage(
        values.cursor === undefined ? { limit } : { limit, before: values.cursor },
      );
      if (values.json) {
        out(
          `${JSON.stringify({ queue: queueName, total: page.total, items: page.items, next: page.next ?? null }, null, 2)}\n`,
        );
        return 0;
      }
      out(`${queueName} queue: ${page.total} dead letter${page.total === 1 ? '' : 's'}, newest first\n`);
      for (const dead of page.items) out(describe(dead));
      if (page.next !== undefined) {
        out(
          `more: wasm-mirror dead-letters list --data ${values.data} --queue ${queueName} --limit ${limit} --cursor ${page.next}\n`,
        );
      }
      return 0;
    }
    case 'show': {
      const id = ids[0]!;
      const dead = await queue.getDead(id);
      if (dead === undefined) throw notFound(queueName, [id]);
      out(`${JSON.stringify(dead, null, 2)}\n`);
      return 0;
    }
    case 'redrive': {
      const redriven: string[] = [];
      const missing: string[] = [];
      for (const id of values.all ? await queue.deadLetterIds() : ids) {
        if (await queue.redrive(id)) redriven.push(id);
        else if (!values.all) missing.push(id);
      }
      if (values.json) out(`${JSON.stringify({ queue: queueName, redriven, missing })}\n`);
      else {
        for (const id of redriven) out(`redriven ${id}\n`);
        out(
          `${redriven.length} dead letter${redriven.length === 1 ? '' : 's'} back on the ${queueName} queue\n`,
        );
      }
      if (missing.length > 0) throw notFound(queueName, missing);
      return 0;
    }
    case 'purge': {
      let purged: number;
      const missing: string[] = [];
      if (values['older-than'] !== undefined) {
        purged = await queue.deleteDeadOlderThan(parseDuration(values['older-than'])!);
      } else {
        purged = 0;
        for (const id of values.all ? await queue.deadLetterIds() : ids) {
          if (await queue.deleteDead(id)) purged++;
          else if (!values.all) missing.push(id);
        }
      }
      if (values.json) out(`${JSON.stringify({ queue: queueName, purged, missing })}\n`);
      else out(`${purged} dead letter${purged === 1 ? '' : 's'} deleted from the ${queueName} queue\n`);
      if (missing.length > 0) throw notFound(queueName, missing);
      return 0;
    }
  }
}

/** Which flags and ids each action takes: anything else is a usage error, not silently ignored. */
function checkFlags(
  action: Action,
  values: { limit?: string; cursor?: string; all: boolean; 'older-than'?: string },
  ids: string[],
): void {
  const listOnly = values.limit !== undefined || values.cursor !== undefined;
  if (listOnly && action !== 'list') throw usage('--limit and --cursor are for list');
  if (values.all && action !== 'redrive' && action !== 'purge') throw usage('--all is for redrive and purge');
  if (values['older-than'] !== undefined) {
    if (action !== 'purge') throw usage('--older-than is for purge');
    if (parseDuration(values['older-than']) === undefined) {
      throw usage(`--older-than '${values['older-than']}' is not a duration (e.g. 7d, 12h, 30m)`);
    }
  }
  switch (action) {
    case 'list':
      if (ids.length > 0) throw usage('list takes no ids');
      return;
    case 'show':
      if (ids.length !== 1) throw usage('show takes exactly one id');
      return;
    case 'redrive':
      if (ids.length > 0 === values.all) throw usage('redrive takes ids, or --all');
      return;
    case 'purge': {
      const modes = [ids.length > 0, values.all, values['older-than'] !== undefined].filter(Boolean).length;
      if (modes !== 1) throw usage('purge takes ids, --all, or --older-than DURATION');
      return;
    }
  }
}

/** The queue in an existing data directory; never creates one (a mistyped --data is an error). */
async function openQueue(dataDir: string, name: QueueName): Promise<DiskQueue<unknown>> {
  const dir = name === 'mirror' ? dataPaths(dataDir).mirrorQueue : dataPaths(dataDir).publishQueue;
  try {
    if (!(await stat(dir)).isDirectory()) throw new Error('not a directory');
  } catch (err) {
    const why = errnoCode(err) === 'ENOENT' ? 'does not exist' : 'is not a queue directory';
    throw new WasmMirrorError(
      'NOT_FOUND',
      `${dir} ${why}: is --data the mirror's data directory (one a server or 'wasm-mirror mirror' has used)?`,
    );
  }
  return new DiskQueue<unknown>({ dir, name });
}

/** One line per dead letter: id, when it died, deliveries, error code, what it was and why it failed. */
function describe(dead: DeadLetter<unknown>): string {
  const message = dead.lastError.message.replace(/\s+/g, ' ');
  return `${dead.messageId}  ${dead.deadAt}  ${dead.attempts} deliveries  ${dead.lastError.code}  ${what(dead.body)}: ${message}\n`;
}

/** A mirror job as its reference, a publish request as what it publishes. */
function what(body: unknown): string {
  if (typeof body !== 'object' || body === null) return JSON.stringify(body);
  const b = body as Record<string, unknown>;
  if (typeof b.registry === 'string' && typeof b.repository === 'string') {
    const tag = typeof b.tag === 'string' ? `:${b.tag}` : '';
    const digest = typeof b.digest === 'string' ? `@${b.digest}` : '';
    return `${b.registry}/${b.repository}${tag}${digest}`;
  }
  if (b.kind === 'record' && typeof b.record === 'object' && b.record !== null) {
    const r = b.record as Record<string, unknown>;
    return `record ${String(r.name)}:${String(r.tag)}`;
  }
  if (b.kind === 'resign') return `re-sign (${String(b.reason)})`;
  return JSON.stringify(body).slice(0, 120);
}

function usage(message: string): WasmMirrorError {
  return new WasmMirrorError('USAGE', `${message}\n\n${HELP}`);
}

function notFound(queue: QueueName, ids: string[]): WasmMirrorError {
  return new WasmMirrorError('NOT_FOUND', `no dead letter ${ids.join(', ')} in the ${queue} queue`);
}
