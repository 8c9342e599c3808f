/**
 * The status page's script: verifies the mirror's signed manifest in the browser, lists the
 * verified entries (filter, sort, copy), and, on the embedded server, adds what only it knows
 * from `/status`. Every text is set with textContent: nothing from the network becomes markup.
 */

import { announce, copyText, el, formatBytes, formatTime, relativeTime } from './dom.ts';
import { renderEmbedded, type StatusBody } from './embedded.ts';
import { keepNodes, keptNodes } from './store.ts';
import {
  type FailureCode,
  type Fetcher,
  loadMirror,
  type MirrorView,
  type ModuleEntry,
  maxBytesOf,
  SIGNATURE_FAILURES,
  type SignedFacts,
  type TreeStats,
} from './verify.ts';
import { wasmPluginYaml } from './wasmplugin.ts';

const base = new URL('.', location.href);
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

/** Below this share of its lifetime left, the manifest is about to expire: re-signing may have stopped. */
const WARN_REMAINING_SHARE = 0.25;
const SKEW_MS = 5 * 60_000;

const fetcher: Fetcher = async (path) => {
  try {
    // Nodes never change, but the page keeps them itself (store.ts): writing each into the HTTP
    // cache as well made a cold load about 30% slower (bench/status-page.ts). The rest is revalidated.
    const res = await fetch(new URL(path, base), {
      cache: path.includes('/nodes/') ? 'no-store' : 'no-cache',
      credentials: 'same-origin',
    });
    if (!res.ok) {
      await res.body?.cancel();
      return { status: res.status, bytes: new Uint8Array() };
    }
    return { status: res.status, bytes: await readCapped(res, maxBytesOf(path)) };
  } catch {
    return { status: 0, bytes: new Uint8Array() };
  }
};

/** The body, read no further than one byte past `cap` (the caller then refuses it as too large). */
async function readCapped(res: Response, cap: number): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(res.headers.get('content-length'));
  const reader = res.body?.getReader();
  if (reader === undefined) return new Uint8Array();
  if (declared > cap) {
    await reader.cancel();
    return new Uint8Array(cap + 1);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    total += value.length;
    if (total > cap) {
      await reader.cancel();
      break;
    }
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

async function loadStatus(): Promise<StatusBody | undefined> {
  try {
    const res = await fetch(new URL('status', base), { cache: 'no-store', credentials: 'same-origin' });
    if (!res.ok || !(res.headers.get('content-type') ?? '').includes('json')) return undefined;
    const body: unknown = await res.json();
    return typeof body === 'object' && body !== null && Array.isArray((body as StatusBody).sources)
      ? (body as StatusBody)
      : undefined;
  } catch {
    return undefined;
  }
}

function pinnedKeyid(): string | undefined {
  const value = new URLSearchParams(location.search).get('keyid')?.trim().toLowerCase();
  return value && /^[0-9a-f]{64}$/.test(value) ? value : undefined;
}

function showSignature(view: MirrorView | { state: 'pending'; progress: string }, pinned?: string): void {
  const box = $('signature');
  box.dataset.state = view.state;
  // Progress lines are not read out one by one: only the verdict is.
  box.setAttribute('aria-busy', String(view.state === 'pending'));
  const detail = (text: string) => el('p', {}, text);
  switch (view.state) {
    case 'pending':
      box.replaceChildren('Checking the signature in this browser…', detail(view.progress));
      return;
    case 'missing':
      box.replaceChildren('No manifest has been published yet', detail('Nothing is listed until one is.'));
      return;
    case 'verified': {
      const nodes =
        view.tree === undefined
          ? ''
          : ' Every tree node read matched the hash its parent pins, so the list below is the signed one.';
      box.replaceChildren(
        'Signature verified',
        detail(`Signed by key ${view.keyid}${pinned === undefined ? '' : ' (the pinned key)'}.${nodes}`),
      );
      return;
    }
    case 'failed': {
      box.replaceChildren(
        failureTitle(view.code),
        detail(`${view.code}: ${view.message}`),
        detail('Nothing is listed: only a verified manifest is shown.'),
      );
    }
  }
}

function failureTitle(code: FailureCode): string {
  if (SIGNATURE_FAILURES.has(code)) return 'Signature does not verify';
  if (code === 'CRYPTO_UNAVAILABLE') return 'The signature cannot be checked in this browser';
  if (code.startsWith('NODE_')) return 'The manifest tree does not match its signed index';
  if (code === 'SCHEMA_ERROR') return 'The signed manifest is malformed';
  return 'The manifest could not be read';
}

function showFacts(
  facts: SignedFacts | undefined,
  keyid: string | undefined,
  now: Date,
  tree?: TreeStats,
): void {
  const list = $('facts');
  list.replaceChildren();
  const add = (term: string, ...value: (Node | string)[]) =>
    list.append(el('dt', {}, term), el('dd', {}, ...value));
  if (facts !== undefined) {
    $('mirror-name').textContent = `— ${facts.mirror}`;
    add('Mirror', facts.mirror);
    add(
      'Manifest',
      `version ${facts.version} (${facts.format === 'v2' ? 'v2 signed index' : 'v1 manifest'})`,
    );
    add('Issued', timeNode(facts.issuedAt), ` (${relativeTime(facts.issuedAt, now)})`);
    add('Expires', timeNode(facts.expiresAt), ` (${relativeTime(facts.expiresAt, now)})`);
    add('Entries', String(facts.entries));
  }
  if (tree !== undefined) {
    const from = [
      [tree.fetched, 'fetched'],
      [tree.carried, 'carried in the index'],
      [tree.kept, 'kept by this browser from an earlier visit'],
    ]
      .filter(([n]) => n !== 0)
      .map(([n, what]) => `${n} ${what}`)
      .join(', ');
    add('Tree nodes', `${tree.nodes} checked against their pins${from === '' ? '' : ` (${from})`}`);
  }
  if (keyid !== undefined) add('Signing key ID', el('code', {}, keyid));
  const fresh = $('freshness');
  fresh.dataset.fresh = 'ok';
  fresh.textContent = '';
  if (facts === undefined) return;
  const issued = Date.parse(facts.issuedAt);
  const expires = Date.parse(facts.expiresAt);
  const left = expires - now.getTime();
  if (left <= 0) {
    fresh.dataset.fresh = 'expired';
    fresh.textContent = `This manifest expired ${relativeTime(facts.expiresAt, now)}: agents refuse it until the mirror signs a new one.`;
  } else if (left < (expires - issued) * WARN_REMAINING_SHARE) {
    fresh.dataset.fresh = 'warning';
    fresh.textContent = `This manifest expires ${relativeTime(facts.expiresAt, now)}: the mirror normally re-signs well before that, so re-signing may have stopped.`;
  } else if (issued > now.getTime() + SKEW_MS) {
    fresh.dataset.fresh = 'warning';
    fresh.textContent = 'This manifest was issued in the future by this computer’s clock: check the clocks.';
  }
}

function timeNode(iso: string): HTMLElement {
  return el('time', { dateTime: iso }, formatTime(iso));
}

type SortKey = 'name' | 'tag' | 'sha256' | 'size' | 'format' | 'abi' | 'mirroredAt';

interface Row {
  m: ModuleEntry;
  /** Position in the verified list: the row's copy buttons find their entry by it. */
  i: number;
  search: string;
  tr?: HTMLTableRowElement;
}

const abiOf = (m: ModuleEntry) => m.abi ?? m.kind ?? '';

function compareBy(key: SortKey): (a: Row, b: Row) => number {
  const byNameTag = (a: Row, b: Row) =>
    a.m.name < b.m.name ? -1 : a.m.name > b.m.name ? 1 : a.m.tag < b.m.tag ? -1 : a.m.tag > b.m.tag ? 1 : 0;
  if (key === 'size') return (a, b) => a.m.size - b.m.size || byNameTag(a, b);
  if (key === 'name') return byNameTag;
  const value = key === 'abi' ? (r: Row) => abiOf(r.m) : (r: Row) => r.m[key];
  return (a, b) => {
    const x = value(a);
    const y = value(b);
    return x < y ? -1 : x > y ? 1 : byNameTag(a, b);
  };
}

/** Rows in the DOM at once: a long list is shown a page at a time, so layout stays cheap. */
const PAGE_ROWS = 200;

/**
 * The module list. Filtering and sorting work on the array; only the first rows of the result
 * are in the DOM (more on request), each row built once and reused.
 */
class ModuleTable {
  readonly #tbody: HTMLTableSectionElement;
  readonly #more: HTMLButtonElement;
  #rows: Row[] = [];
  #sorted: Row[] = [];
  #matching: Row[] = [];
  #shown = PAGE_ROWS;
  #version = 0;
  #sort: { key: SortKey; dir: 1 | -1 } = { key: 'name', dir: 1 };

  constructor(
    readonly table: HTMLTableElement,
    readonly filterInput: HTMLInputElement,
  ) {
    this.#tbody = table.tBodies[0]!;
    this.#more = $('more') as HTMLButtonElement;
    this.#more.addEventListener('click', () => {
      this.#shown += PAGE_ROWS;
      this.#render();
    });
    table.tHead!.addEventListener('click', (event) => {
      const button = (event.target as HTMLElement).closest('button[data-sort]') as HTMLButtonElement | null;
      if (button !== null) this.sortBy(button.dataset.sort as SortKey);
    });
    this.#tbody.addEventListener('click', (event) => {
      const button = (event.target as HTMLElement).closest('button[data-copy]') as HTMLButtonElement | null;
      if (button !== null) void this.#copy(button);
    });
  }

  show(modules: ModuleEntry[], version: number): void {
    this.#version = version;
    this.#rows = modules.map((m, i) => ({
      m,
      i,
      search: `${m.name}:${m.tag} ${m.sha256} ${m.format} ${abiOf(m)}`.toLowerCase(),
    }));
    this.#order();
  }

  filter(text: string): void {
    const words = text.toLowerCase().split(/\s+/).filter(Boolean);
    this.#matching =
      words.length === 0
        ? this.#sorted
        : this.#sorted.filter((r) => words.every((w) => r.search.includes(w)));
    this.#shown = PAGE_ROWS;
    this.#render();
  }

  sortBy(key: SortKey): void {
    this.#sort = { key, dir: this.#sort.key === key ? (-this.#sort.dir as 1 | -1) : 1 };
    for (const th of Array.from(this.table.tHead!.querySelectorAll('th'))) {
      const k = th.querySelector('button')?.dataset.sort;
      if (k === key) th.setAttribute('aria-sort', this.#sort.dir === 1 ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    this.#order();
    announce(`Sorted by ${key}, ${this.#sort.dir === 1 ? 'ascending' : 'descending'}`);
  }

  #order(): void {
    const compare = compareBy(this.#sort.key);
    const dir = this.#sort.dir;
    this.#sorted = [...this.#rows].sort((a, b) => dir * compare(a, b));
    this.filter(this.filterInput.value);
  }

  #render(): void {
    const fragment = document.createDocumentFragment();
    const visible = this.#matching.slice(0, this.#shown);
    for (const r of visible) {
      r.tr ??= rowFor(r);
      fragment.append(r.tr);
    }
    if (this.#rows.length === 0) {
      fragment.append(
        el('tr', {}, el('td', { colSpan: 8, className: 'empty' }, 'The manifest lists no modules yet.')),
      );
    } else if (this.#matching.length === 0) {
      fragment.append(
        el('tr', {}, el('td', { colSpan: 8, className: 'empty' }, 'No module matches the filter.')),
      );
    }
    this.#tbody.replaceChildren(fragment);
    const total = this.#rows.length;
    const matching = this.#matching.length;
    const left = matching - visible.length;
    this.#more.hidden = left <= 0;
    this.#more.textContent = `Show ${Math.min(left, PAGE_ROWS)} more`;
    const shownNote = left > 0 ? `, the first ${visible.length} shown` : '';
    $('count').textContent =
      matching === total
        ? `${total} module${total === 1 ? '' : 's'}${shownNote}`
        : `${matching} of ${total} modules match the filter${shownNote}`;
  }

  async #copy(button: HTMLButtonElement): Promise<void> {
    const row = this.#rows[Number(button.closest('tr')?.dataset.i)];
    if (row === undefined) return;
    const { m } = row;
    const what = button.dataset.copy === 'sha256' ? 'sha256' : 'WasmPlugin';
    const text =
      what === 'sha256'
        ? m.sha256
        : wasmPluginYaml(m, ($('mirror-url') as HTMLInputElement).value || base.href, this.#version);
    const ok = await copyText(text);
    const label = button.textContent;
    button.textContent = ok ? 'Copied' : 'Copy failed';
    announce(ok ? `Copied the ${what} of ${m.name}:${m.tag}` : `Could not copy the ${what}`);
    setTimeout(() => {
      button.textContent = label;
    }, 1500);
  }
}

/** A repository path that may wrap after each slash, not inside a segment. */
function breakable(name: string): (Node | string)[] {
  return name.split('/').flatMap((part, i) => (i === 0 ? [part] : [el('wbr', {}), `/${part}`]));
}

function rowFor(row: Row): HTMLTableRowElement {
  const { m } = row;
  const ref = `${m.name}:${m.tag}`;
  const copySha = el('button', { type: 'button', ariaLabel: `Copy the sha256 of ${ref}` }, 'Copy');
  copySha.dataset.copy = 'sha256';
  const copyPlugin = el('button', { type: 'button', ariaLabel: `Copy a WasmPlugin for ${ref}` }, 'Copy YAML');
  copyPlugin.dataset.copy = 'wasmplugin';
  const tr = el(
    'tr',
    {},
    el('td', { className: 'name' }, ...breakable(m.name)),
    el('td', {}, m.tag),
    el('td', { className: 'nowrap' }, el('code', { title: m.sha256 }, m.sha256.slice(0, 12)), ' ', copySha),
    el('td', { className: 'num', title: `${m.size} bytes` }, formatBytes(m.size)),
    el('td', { className: 'nowrap' }, m.format),
    el('td', { className: 'nowrap' }, abiOf(m)),
    el('td', { className: 'nowrap' }, el('time', { dateTime: m.mirroredAt }, formatTime(m.mirroredAt))),
    el('td', {}, copyPlugin),
  );
  tr.dataset.i = String(row.i);
  return tr;
}

async function main(): Promise<void> {
  const pinned = pinnedKeyid();
  const mirrorUrl = $('mirror-url') as HTMLInputElement;
  mirrorUrl.value = base.href.replace(/\/$/, '');
  $('mirror-url-shown').textContent = `Status of the mirror at ${base.href}`;
  const filter = $('filter') as HTMLInputElement;
  const table = new ModuleTable($('modules') as HTMLTableElement, filter);
  filter.addEventListener('input', () => table.filter(filter.value));

  const status = loadStatus();
  const kept = keptNodes(base.href);
  const now = new Date();
  showSignature({ state: 'pending', progress: 'Reading keys.json and the signed index.' });
  // Marks for whoever measures the page (the browser tests print them).
  performance.mark('status-page:start');
  let progress: [read: number, known: number] | undefined;
  let drawing = false;
  let settled = false;
  const view = await loadMirror(fetcher, {
    now,
    kept,
    ...(pinned === undefined ? {} : { pinnedKeyid: pinned }),
    onProgress: (read, known) => {
      if (progress === undefined) performance.mark('status-page:index-verified');
      progress = [read, known];
      // At most one progress line per frame: redrawing it per node would cost more than the nodes.
      if (drawing) return;
      drawing = true;
      requestAnimationFrame(() => {
        drawing = false;
        if (settled || progress === undefined) return;
        showSignature({
          state: 'pending',
          progress: `Signature verified; checking tree nodes: ${progress[0]} of ${progress[1]}.`,
        });
      });
    },
  });
  settled = true;
  performance.mark('status-page:verified');
  showSignature(view, pinned);
  if (view.state === 'verified') {
    showFacts(view.facts, view.keyid, now, view.tree);
    table.show(view.modules, view.facts.version);
    filter.disabled = false;
    performance.mark('status-page:listed');
    // For the next visit: written after the list is shown, and only when the tree changed. The
    // mark says the attempt is over (kept or not), for whoever waits on it.
    const { tree, nodes } = view;
    if (
      nodes !== undefined &&
      tree !== undefined &&
      (tree.kept !== nodes.size || (await kept).size !== nodes.size)
    )
      void keepNodes(base.href, nodes).then(() => performance.mark('status-page:kept'));
  } else if (view.state === 'failed') {
    showFacts(view.facts, view.keyid, now);
    $('count').textContent = 'Nothing is listed: the manifest did not verify.';
  } else {
    showFacts(undefined, undefined, now);
  }
  document.body.dataset.ready = view.state;

  const body = await status;
  if (body === undefined) $('static-note').hidden = false;
  else renderEmbedded(body, base, now);
  document.body.dataset.status = body === undefined ? 'absent' : 'shown';
}

void main();
