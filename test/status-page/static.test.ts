/**
 * The status page as a static file next to the public documents (how AWS hosts it), in a real
 * browser: 5,000 entries verified node by node, rendered, filtered and sorted (timings printed,
 * not asserted), verified again on a revisit from the nodes the browser kept, a small publish
 * read from the nodes its index carries, and every tampering ends in a red state with nothing
 * listed, or (an unsigned copy of a node) in the node being fetched instead.
 */
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v2Keys } from '../../shared/core/manifest/index.ts';
import { INSECURE_HOST, openBrowser, screenshot, type TestBrowser, verdict } from './browser.ts';
import { type StaticMirror, startStaticMirror, syntheticEntries, tamperEnvelope } from './static-mirror.ts';

const ENTRIES = 5000;

let browser: TestBrowser;

beforeAll(async () => {
  browser = await openBrowser();
});

afterAll(async () => {
  await browser?.close();
});

const rowCount = (page: Page) => page.locator('#modules tbody tr[data-i]').count();

/** The node paths the mirror was asked for since `requests` was last emptied. */
const nodeRequests = (mirror: StaticMirror) => mirror.requests.filter((p) => p.includes('/nodes/'));

/** Waits until the page has kept the tree it verified for the next visit. */
const treeKept = (page: Page) =>
  page.waitForFunction(() => performance.getEntriesByName('status-page:kept').length > 0);

/** The page's own marks: from navigation to index verified, tree verified, list rendered. */
async function marks(page: Page): Promise<string> {
  return page.evaluate(() =>
    performance
      .getEntriesByType('mark')
      .filter((m) => m.name.startsWith('status-page:'))
      .map((m) => `${m.name.slice('status-page:'.length)} ${Math.round(m.startTime)} ms`)
      .join(', '),
  );
}

describe('a static mirror of 5,000 entries', () => {
  let mirror: StaticMirror;
  const entries = syntheticEntries(ENTRIES);

  beforeAll(async () => {
    mirror = await startStaticMirror({ entries, mirror: 'big-mesh' });
  });

  afterAll(() => mirror?.stop());

  it('verifies every node, renders, filters and sorts', async () => {
    const page = await browser.newPage();
    mirror.requests.length = 0;
    const started = Date.now();
    await page.goto(`${mirror.url}/`);
    expect(await verdict(page, 60_000)).toBe('verified');
    const loadedMs = Date.now() - started;
    const inPage = await page.evaluate(() => performance.now());
    expect(await page.textContent('#count')).toBe(`${ENTRIES} modules, the first 200 shown`);
    expect(await rowCount(page)).toBe(200);
    const phases = await marks(page);
    expect(await page.textContent('#signature')).toContain(mirror.keyid);
    const nodes = [...mirror.files.keys()].filter((k) => k.includes('/nodes/')).length;
    // Each node requested once, none twice.
    const asked = nodeRequests(mirror);
    expect(new Set(asked).size).toBe(nodes);
    expect(asked).toHaveLength(nodes);

    // Filter: from the input event to the next frame, measured in the page.
    const filterMs = await page.evaluate(async () => {
      const input = document.getElementById('filter') as HTMLInputElement;
      const t0 = performance.now();
      input.value = 'plugin-0042';
      input.dispatchEvent(new Event('input'));
      await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
      return performance.now() - t0;
    });
    expect(await rowCount(page)).toBe(4);
    expect(await page.textContent('#count')).toBe(`4 of ${ENTRIES} modules match the filter`);
    // Words narrow the match: a name and a tag.
    await page.fill('#filter', 'plugin-0042 1.3.0');
    expect(await rowCount(page)).toBe(1);
    await page.fill('#filter', entries[1234]!.sha256.slice(0, 16));
    expect(await rowCount(page)).toBe(1);
    await page.fill('#filter', '');
    expect(await rowCount(page)).toBe(200);
    await page.click('#more');
    expect(await rowCount(page)).toBe(400);
    // A filter matching more than a page: 1,250 names end in 1.2.0.
    await page.fill('#filter', '1.2.0');
    expect(await page.textContent('#count')).toBe(
      `1250 of ${ENTRIES} modules match the filter, the first 200 shown`,
    );
    await page.fill('#filter', '');

    const sortMs = await page.evaluate(async () => {
      const button = document.querySelector('button[data-sort="size"]') as HTMLButtonElement;
      const t0 = performance.now();
      button.click();
      await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
      return performance.now() - t0;
    });
    const smallest = [...entries].sort((a, b) => a.size - b.size)[0]!;
    expect(await page.textContent('#modules tbody tr:first-child td:nth-child(1)')).toBe(smallest.name);
    expect(await page.getAttribute('th:has(button[data-sort="size"])', 'aria-sort')).toBe('ascending');

    console.log(
      `status page, ${ENTRIES} entries (${nodes} v2 nodes fetched and hashed): verified and rendered ` +
        `${loadedMs} ms after navigation (page clock: ${phases}; settled ${Math.round(inPage)} ms); ` +
        `filter ${filterMs.toFixed(1)} ms; sort by size ${sortMs.toFixed(1)} ms`,
    );
    // Static hosting: no /status, so the embedded-only part stays hidden.
    expect(await page.isHidden('#embedded')).toBe(true);
    expect(await page.isVisible('#static-note')).toBe(true);
    await page.fill('#filter', 'plugin-004');
    await screenshot(page, 'static-5000-filtered', false);
    await treeKept(page);
    await page.close();
  });

  it('verifies a revisit from the nodes this browser kept, requesting none of them', async () => {
    // Prepare: the tree kept by the visit above, at the same origin.
    mirror.requests.length = 0;
    const page = await browser.newPage();

    // Act
    await page.goto(`${mirror.url}/`);

    // Assess
    expect(await verdict(page, 60_000)).toBe('verified');
    expect(await page.textContent('#count')).toBe(`${ENTRIES} modules, the first 200 shown`);
    expect(nodeRequests(mirror)).toEqual([]);
    expect(await page.textContent('#facts')).toContain(
      '1343 checked against their pins (1343 kept by this browser from an earlier visit)',
    );
    console.log(`status page, ${ENTRIES} entries, revisit: page clock ${await marks(page)}`);
    await page.close();
  });
});

describe('a publish whose index carries the nodes it wrote', () => {
  /** 600 entries (depth 2) at an origin of its own, then one more entry, published with its nodes carried. */
  async function published() {
    const mirror = await startStaticMirror({ entries: syntheticEntries(600), mirror: 'carry-mesh' });
    const added = syntheticEntries(601)[600]!;
    const carried = await mirror.publish([added]);
    mirror.requests.length = 0;
    return { mirror, added, carried };
  }

  it('is listed without requesting the carried nodes', async () => {
    // Prepare
    const { mirror, added, carried } = await published();
    const page = await browser.newPage();
    try {
      // Act
      await page.goto(`${mirror.url}/`);

      // Assess
      expect(await verdict(page)).toBe('verified');
      expect(await page.textContent('#count')).toBe('601 modules, the first 200 shown');
      const asked = nodeRequests(mirror);
      expect(carried.size).toBe(2);
      for (const sha256 of carried.keys()) expect(asked).not.toContain(v2Keys.node(sha256));
      expect(await page.textContent('#facts')).toContain(
        `${asked.length + 2} checked against their pins (${asked.length} fetched, 2 carried in the index)`,
      );
      await page.fill('#filter', added.name);
      expect(await rowCount(page)).toBe(1);
    } finally {
      await page.close();
      await mirror.stop();
    }
  });

  it('fetches instead a carried node that does not match its pin, and is red when the mirror lacks it', async () => {
    // Prepare: the carried bin altered in the index (not signed, so the signature still verifies),
    // and the mirror without that bin.
    const { mirror, added, carried } = await published();
    const binPin = [...carried].find(([, bytes]) => Buffer.from(bytes).includes('"modules"'))![0];
    const envelope = JSON.parse(Buffer.from(mirror.files.get(v2Keys.index)!).toString()) as {
      nodes: { modules?: { name: string; size: number }[] }[];
    };
    for (const m of envelope.nodes.flatMap((n) => n.modules ?? [])) if (m.name === added.name) m.size = 1;
    mirror.override(v2Keys.index, Buffer.from(JSON.stringify(envelope)));
    mirror.override(v2Keys.node(binPin), undefined);
    const page = await browser.newPage();
    try {
      // Act
      await page.goto(`${mirror.url}/`);

      // Assess: the altered copy is not used; the node it stood for is missing.
      expect(await verdict(page)).toBe('failed');
      expect(await page.textContent('#signature')).toContain('NODE_MISSING');
      expect(await page.locator('#modules tbody tr').count()).toBe(0);
      expect(nodeRequests(mirror)).toContain(v2Keys.node(binPin));

      // Act: the mirror serves the bin again (the index still carries the altered copy).
      mirror.override(v2Keys.node(binPin), mirror.files.get(v2Keys.node(binPin)));
      mirror.requests.length = 0;
      await page.reload();

      // Assess: the fetched bin's signed entry is listed, not the altered one.
      expect(await verdict(page)).toBe('verified');
      expect(nodeRequests(mirror)).toContain(v2Keys.node(binPin));
      await page.fill('#filter', added.name);
      expect(await rowCount(page)).toBe(1);
      expect(await page.getAttribute('#modules tbody tr[data-i] td.num', 'title')).toBe(
        `${added.size} bytes`,
      );
    } finally {
      await page.close();
      await mirror.stop();
    }
  });
});

describe('nodes kept by the browser', () => {
  it('are used on a revisit only while they match their pins', async () => {
    // Prepare: a first visit keeps the tree; then one kept bin is altered in IndexedDB.
    const mirror = await startStaticMirror({ entries: syntheticEntries(40), mirror: 'kept-mesh' });
    const page = await browser.newPage();
    try {
      await page.goto(`${mirror.url}/`);
      expect(await verdict(page)).toBe('verified');
      await treeKept(page);
      const altered = await page.evaluate(async () => {
        const db = await new Promise<IDBDatabase>((resolve, reject) => {
          const r = indexedDB.open('wasm-mirror-status');
          r.onsuccess = () => resolve(r.result);
          r.onerror = () => reject(r.error);
        });
        const key = new URL('.', location.href).href;
        const nodes = await new Promise<Map<string, Uint8Array>>((resolve, reject) => {
          const r = db.transaction('trees').objectStore('trees').get(key);
          r.onsuccess = () => resolve(r.result as Map<string, Uint8Array>);
          r.onerror = () => reject(r.error);
        });
        const text = (b: Uint8Array) => new TextDecoder().decode(b);
        const [pin, bytes] = [...nodes].find(([, b]) => text(b).includes('"modules"'))!;
        nodes.set(pin, new TextEncoder().encode(text(bytes).replace('"size":', '"size":1')));
        await new Promise((resolve, reject) => {
          const tx = db.transaction('trees', 'readwrite');
          tx.objectStore('trees').put(nodes, key);
          tx.oncomplete = resolve;
          tx.onerror = () => reject(tx.error);
        });
        db.close();
        return pin;
      });
      mirror.requests.length = 0;

      // Act
      await page.reload();

      // Assess: that node alone is requested again, and the list is the signed one.
      expect(await verdict(page)).toBe('verified');
      expect(nodeRequests(mirror)).toEqual([v2Keys.node(altered)]);
      expect(await rowCount(page)).toBe(40);
      expect(await page.textContent('#facts')).toMatch(/\(1 fetched, \d+ kept by this browser/);
    } finally {
      await page.close();
      await mirror.stop();
    }
  });
});

describe('tampering in a small static mirror', () => {
  let mirror: StaticMirror;
  const entries = syntheticEntries(40);

  beforeAll(async () => {
    mirror = await startStaticMirror({ entries, mirror: 'small-mesh' });
  });

  afterAll(() => mirror?.stop());

  const open = async (path = '/') => {
    const page = await browser.newPage();
    await page.goto(`${mirror.url}${path}`);
    return { page, state: await verdict(page) };
  };

  it('verifies the untouched mirror', async () => {
    mirror.reset();
    const { page, state } = await open();
    expect(state).toBe('verified');
    expect(await rowCount(page)).toBe(entries.length);
    await page.close();
  });

  it('shows a tampered index as a signature that does not verify, listing nothing', async () => {
    mirror.reset();
    const index = mirror.files.get(v2Keys.index)!;
    // Someone stretches the expiry of an index they cannot re-sign.
    mirror.override(
      v2Keys.index,
      tamperEnvelope(index, (p) => {
        p.expiresAt = '2099-01-01T00:00:00Z';
      }),
    );
    const { page, state } = await open();
    expect(state).toBe('failed');
    const box = page.locator('#signature');
    expect(await box.textContent()).toContain('Signature does not verify');
    expect(await box.textContent()).toContain('SIGNATURE_INVALID');
    expect(await page.locator('#modules tbody tr').count()).toBe(0);
    expect(await page.isDisabled('#filter')).toBe(true);
    // Red, never green: the failed style's background.
    const background = await box.evaluate((e) => getComputedStyle(e).backgroundColor);
    expect(background).toBe('rgb(255, 235, 233)');
    await screenshot(page, 'tampered-index', false);
    await page.close();
  });

  it('refuses a node that does not match its pin', async () => {
    // A mirror of its own: at another origin, so the browser has kept nothing of it.
    const fresh = await startStaticMirror({ entries, mirror: 'small-mesh' });
    const bin = [...fresh.files.entries()].find(
      ([path, bytes]) => path.includes('/nodes/') && Buffer.from(bytes).includes('"modules"'),
    )!;
    const text = Buffer.from(bin[1]).toString('utf8');
    fresh.override(bin[0], Buffer.from(text.replace(/"size":(\d)/, '"size":9')));
    const page = await browser.newPage();
    try {
      await page.goto(`${fresh.url}/`);
      expect(await verdict(page)).toBe('failed');
      expect(await page.textContent('#signature')).toContain('does not match its signed index');
      expect(await page.textContent('#signature')).toContain('NODE_HASH_MISMATCH');
      expect(await page.locator('#modules tbody tr').count()).toBe(0);
      await screenshot(page, 'tampered-node', false);
    } finally {
      await page.close();
      await fresh.stop();
    }
  });

  it('refuses an index when the pinned key is not the one keys.json lists', async () => {
    mirror.reset();
    const { page, state } = await open(`/?keyid=${'ab'.repeat(32)}`);
    expect(state).toBe('failed');
    expect(await page.textContent('#signature')).toContain('Signature does not verify');
    await page.close();
    const pinned = await open(`/?keyid=${mirror.keyid}`);
    expect(pinned.state).toBe('verified');
    expect(await pinned.page.textContent('#signature')).toContain('the pinned key');
    await pinned.page.close();
  });

  it('stops reading an index that never ends, at the size an index may have', async () => {
    // Prepare
    mirror.reset();
    mirror.endless(v2Keys.index);
    // Act
    const { page, state } = await open();
    // Assess
    expect(state).toBe('failed');
    expect(await page.textContent('#signature')).toContain(`over ${64 * 1024} bytes`);
    // What the server got out before the page stopped reading: socket buffers, not the stream.
    expect(mirror.endlessBytes()).toBeLessThan(32 * 1024 * 1024);
    await page.close();
    mirror.reset();
  });

  it('refuses an index whose keys.json lists another key', async () => {
    mirror.reset();
    const other = await startStaticMirror({ entries: [] });
    mirror.override('keys.json', other.files.get('keys.json'));
    await other.stop();
    const { page, state } = await open();
    expect(state).toBe('failed');
    expect(await page.textContent('#signature')).toContain('UNKNOWN_KEY');
    await page.close();
  });
});

describe('a page without WebCrypto', () => {
  it('says the signature cannot be checked, over plain http to a name other than localhost', async () => {
    const mirror = await startStaticMirror({ entries: syntheticEntries(4) });
    try {
      const page = await browser.newPage();
      await page.goto(mirror.url.replace('127.0.0.1', INSECURE_HOST) + '/');
      expect(await page.evaluate(() => window.isSecureContext)).toBe(false);
      expect(await verdict(page)).toBe('failed');
      expect(await page.textContent('#signature')).toContain(
        'The signature cannot be checked in this browser',
      );
      expect(await page.locator('#modules tbody tr[data-i]').count()).toBe(0);
      await page.close();
    } finally {
      await mirror.stop();
    }
  });
});

describe('a v1 mirror (latest.json only)', () => {
  it('verifies it, and refuses it tampered', async () => {
    const entries = syntheticEntries(8);
    const mirror = await startStaticMirror({ entries, format: 'v1' });
    try {
      const page = await browser.newPage();
      await page.goto(`${mirror.url}/`);
      expect(await verdict(page)).toBe('verified');
      expect(await rowCount(page)).toBe(8);
      expect(await page.textContent('#facts')).toContain('v1 manifest');
      mirror.override(
        'manifests/latest.json',
        tamperEnvelope(mirror.files.get('manifests/latest.json')!, (p) => {
          (p.modules as { sha256: string }[])[0]!.sha256 = 'f'.repeat(64);
        }),
      );
      await page.reload();
      expect(await verdict(page)).toBe('failed');
      expect(await page.textContent('#signature')).toContain('Signature does not verify');
      expect(await page.locator('#modules tbody tr').count()).toBe(0);
      await page.close();
    } finally {
      await mirror.stop();
    }
  });
});

describe('freshness', () => {
  it('warns when the manifest is close to expiry, and flags an expired one', async () => {
    const hour = 3600_000;
    const soon = await startStaticMirror({
      entries: syntheticEntries(4),
      issuedAt: new Date(Date.now() - 44 * hour),
      ttlMs: 48 * hour,
    });
    const expired = await startStaticMirror({
      entries: syntheticEntries(4),
      issuedAt: new Date(Date.now() - 50 * hour),
      ttlMs: 48 * hour,
    });
    try {
      const page = await browser.newPage();
      await page.goto(`${soon.url}/`);
      expect(await verdict(page)).toBe('verified');
      expect(await page.getAttribute('#freshness', 'data-fresh')).toBe('warning');
      expect(await page.textContent('#freshness')).toContain('expires in 4 h');
      await page.goto(`${expired.url}/`);
      expect(await verdict(page)).toBe('verified');
      expect(await page.getAttribute('#freshness', 'data-fresh')).toBe('expired');
      expect(await page.textContent('#freshness')).toContain('agents refuse it');
      await page.close();
    } finally {
      await soon.stop();
      await expired.stop();
    }
  });
});
