/**
 * The part of the page only the embedded server can fill: its webhook sources, recent mirror
 * failures and dead letters, read from `/status`. The body is not signed and is read
 * defensively: a field of an unexpected shape is shown as absent, never trusted as markup.
 */
import { el, formatTime, relativeTime } from './dom.ts';

interface SourceView {
  id?: unknown;
  type?: unknown;
  registry?: unknown;
  webhook?: unknown;
  repositories?: unknown;
  rateLimitPerMinute?: unknown;
  webhookTokenInPath?: unknown;
  webhookSecret?: { name?: unknown; set?: unknown };
  recent?: {
    windowMinutes?: unknown;
    authFailures?: unknown;
    lastAuthFailureAt?: unknown;
    rateLimited?: unknown;
    lastRateLimitedAt?: unknown;
  };
}

export interface StatusBody {
  sources: SourceView[];
  recentFailures?: unknown;
  deadLetters?: unknown;
  deadLettersPage?: { total?: unknown; shown?: unknown; next?: unknown };
  queues?: Record<string, { ready?: unknown; inFlight?: unknown; delayed?: unknown; dead?: unknown }>;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const obj = (v: unknown): Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

function warningsOf(s: SourceView, now: Date): string[] {
  const out: string[] = [];
  const secret = s.webhookSecret;
  if (secret !== undefined && secret.set === false) {
    const name = str(secret.name);
    out.push(
      name === ''
        ? 'No webhook secret is configured: every delivery is refused.'
        : `The webhook secret ${name} is not set: every delivery is refused until it is.`,
    );
  }
  const recent = s.recent;
  if (recent !== undefined) {
    const minutes = num(recent.windowMinutes);
    const auth = num(recent.authFailures);
    const limited = num(recent.rateLimited);
    const last = (v: unknown) => (typeof v === 'string' ? `, the last ${relativeTime(v, now)}` : '');
    if (auth > 0) {
      out.push(
        `${auth} deliver${auth === 1 ? 'y' : 'ies'} failed authentication in the last ${minutes} minutes${last(recent.lastAuthFailureAt)}: check the sender's secret.`,
      );
    }
    if (limited > 0) {
      const perMinute = num(s.rateLimitPerMinute);
      out.push(
        `${limited} deliver${limited === 1 ? 'y was' : 'ies were'} refused by the rate limit (${perMinute} job${perMinute === 1 ? '' : 's'} a minute) in the last ${minutes} minutes${last(recent.lastRateLimitedAt)}.`,
      );
    }
  }
  return out;
}

function sourceCard(s: SourceView, base: URL, now: Date): HTMLElement {
  const id = str(s.id);
  const path = str(s.webhook) || `/hooks/${id}`;
  const url =
    new URL(path.replace(/^\//, ''), base).href + (s.webhookTokenInPath === true ? '/<secret>' : '');
  const warnings = warningsOf(s, now);
  const facts = el(
    'dl',
    { className: 'facts' },
    el('dt', {}, 'Type'),
    el('dd', {}, str(s.type)),
    el('dt', {}, 'Registry'),
    el('dd', {}, el('code', {}, str(s.registry))),
    el('dt', {}, 'Webhook URL'),
    el('dd', {}, el('code', {}, url)),
    el('dt', {}, 'Allow-list'),
    el(
      'dd',
      {},
      el(
        'ul',
        { className: 'chips', ariaLabel: `Repositories ${id} may mirror` },
        ...list(s.repositories).map((r) => el('li', {}, el('code', {}, str(r)))),
      ),
    ),
  );
  const card = el('article', { className: 'source' }, el('h3', {}, id), facts);
  card.dataset.source = id;
  if (warnings.length > 0) {
    card.append(
      el(
        'ul',
        { className: 'warnings', ariaLabel: `Warnings for ${id}` },
        ...warnings.map((w) => el('li', {}, w)),
      ),
    );
  }
  return card;
}

function jobReference(job: unknown): string {
  const j = obj(job);
  if (typeof j.repository === 'string') {
    const tag = typeof j.tag === 'string' ? `:${j.tag}` : '';
    const digest = typeof j.digest === 'string' ? `@${j.digest}` : '';
    return `${str(j.registry)}/${j.repository}${tag}${digest}`;
  }
  return JSON.stringify(job ?? null).slice(0, 200);
}

function cells(...values: (string | Node)[]): HTMLTableRowElement {
  return el('tr', {}, ...values.map((v) => el('td', {}, v)));
}

function emptyRow(text: string): HTMLTableRowElement {
  return el('tr', {}, el('td', { colSpan: 5, className: 'empty' }, text));
}

export function renderEmbedded(body: StatusBody, base: URL, now: Date): void {
  const at = (iso: unknown) =>
    typeof iso === 'string' ? el('time', { dateTime: iso }, formatTime(iso)) : '';
  document
    .getElementById('sources')!
    .replaceChildren(
      ...(body.sources.length === 0
        ? [el('p', { className: 'empty' }, 'No webhook sources are configured.')]
        : body.sources.map((s) => sourceCard(s, base, now))),
    );

  const mirrorQueue = obj(obj(body.queues).mirror);
  const publishQueue = obj(obj(body.queues).publish);
  const waiting = (q: Record<string, unknown>) => num(q.ready) + num(q.delayed);
  document.getElementById('queues')!.textContent =
    `Mirror queue: ${waiting(mirrorQueue)} waiting, ${num(mirrorQueue.inFlight)} in flight. ` +
    `Publish queue: ${waiting(publishQueue)} waiting, ${num(publishQueue.inFlight)} in flight.`;

  const failures = list(body.recentFailures).map(obj);
  document
    .getElementById('failures')!
    .replaceChildren(
      ...(failures.length === 0
        ? [emptyRow('No mirror failures since the server started.')]
        : failures.map((f) =>
            cells(
              at(f.at),
              str(f.sourceId),
              el('code', { className: 'ref' }, str(f.reference)),
              el('code', { className: 'code' }, str(f.code)),
              str(f.message),
            ),
          )),
    );

  const dead = list(body.deadLetters).map(obj);
  const page = obj(body.deadLettersPage);
  const total = num(page.total);
  const deadCount = document.getElementById('dead-count')!;
  deadCount.textContent =
    total > dead.length
      ? `The newest ${dead.length} of ${total} dead letters. Inspect, redrive or purge them with wasm-mirror dead-letters. `
      : `${dead.length} dead letter${dead.length === 1 ? '' : 's'}. Inspect, redrive or purge them with wasm-mirror dead-letters.`;
  // Only the server's own paging path is linked, relative to the page.
  if (typeof page.next === 'string' && /^\/status\/dead-letters\?/.test(page.next)) {
    deadCount.append(el('a', { href: new URL(page.next.slice(1), base).href }, 'The next page, as JSON'));
  }
  document.getElementById('dead-letters')!.replaceChildren(
    ...(dead.length === 0
      ? [emptyRow('No dead letters.')]
      : dead.map((d) => {
          const error = obj(d.error);
          return cells(
            at(d.deadAt),
            el('code', { className: 'ref' }, jobReference(d.job)),
            String(num(d.attempts)),
            el('code', { className: 'code' }, str(error.code)),
            str(error.message),
          );
        })),
  );
  document.getElementById('embedded')!.hidden = false;
}
