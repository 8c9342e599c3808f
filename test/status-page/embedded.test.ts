/**
 * The status page on the embedded server, in a real browser: a module pushed to a real registry
 * and mirrored through the pipeline is listed, verified in the page; the copied WasmPlugin
 * points at bytes with the sha256 it pins; sources show their webhook URL, allow-list and
 * warnings; failures and dead letters show their codes; a tampered index served in front of the
 * same mirror turns the page red.
 */
import { copyFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { v2Keys } from '../../shared/core/manifest/index.ts';
import { type Harness, pushWasm, startHarness } from '../support/index.ts';
import {
  DISTRIBUTION_EVENTS_V1,
  distributionEnvelope,
  sha256Of,
  waitForManifest,
} from '../support/mirror.ts';
import { minimalComponent, proxyWasmModule } from '../support/wasm.ts';
import { openBrowser, screenshot, type TestBrowser, verdict } from './browser.ts';
import { tamperEnvelope } from './static-mirror.ts';

const TOKEN = 'status-page-hook-token-0001';
const LIMITED_TOKEN = 'status-page-limited-token-0001';
const GONE_TOKEN = 'status-page-gone-token-0001';

interface Status {
  recentFailures: { code: string; reference: string }[];
  deadLetters: { job: { repository: string }; error: { code: string; message: string } }[];
}

describe('the status page on the embedded server', () => {
  let harness: Harness;
  let browser: TestBrowser;
  let url: string;
  const pushed = new Map<string, Uint8Array>();

  const status = async () => (await (await fetch(`${url}/status`)).json()) as Status;
  const until = async <T>(probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const value = await probe();
      if (value !== undefined) return value;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('condition not reached');
  };

  beforeAll(async () => {
    harness = await startHarness({
      mirrorName: 'status-mesh',
      notify: true,
      token: TOKEN,
      sources: [
        `  - { id: local, type: distribution, registry: "{registry}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }`,
        `  - { id: limited, type: distribution, registry: "{registry}", insecure: true, repositories: ["team-a/*", "team-b/**"], webhookSecretEnv: LIMITED_TOKEN, rateLimitPerMinute: 1 }`,
        `  - { id: quay-acme, type: quay, registry: quay.io, repositories: ["acme/*"], webhookSecretEnv: QUAY_TOKEN }`,
        `  - { id: gone, type: distribution, registry: "127.0.0.1:9", insecure: true, repositories: ["**"], webhookSecretEnv: GONE_TOKEN }`,
      ].join('\n'),
      env: { HOOK_TOKEN: TOKEN, LIMITED_TOKEN, GONE_TOKEN },
      retry: { maxAttempts: 2, backoffBaseMs: 50 },
    });
    url = harness.mirror.url;
    browser = await openBrowser();
    const modules: [string, Uint8Array, Parameters<typeof pushWasm>[3]][] = [
      ['plugins/basic-auth:1.4.2', proxyWasmModule({ marker: 'basic auth' }), 'wasm-artifact'],
      ['plugins/rate-limit:0.9.0', proxyWasmModule({ marker: 'rate limit' }), 'cncf-wasm'],
      ['plugins/header-rewrite:2.0.1', proxyWasmModule({ marker: 'headers' }), 'compat-oci'],
      ['plugins/geo-component:0.1.0', minimalComponent(), 'cncf-wasm'],
    ];
    for (const [ref, bytes, format] of modules) {
      await pushWasm(harness.registry.host, ref, bytes, format);
      pushed.set(`${harness.registry.host}/${ref.split(':')[0]}`, bytes);
    }
    await waitForManifest(url, (p) => p.modules.length === modules.length, 60_000);
  });

  afterAll(async () => {
    await browser?.close();
    await harness?.stop();
  });

  const open = async (at = `${url}/`): Promise<Page> => {
    const page = await browser.newPage();
    await page.goto(at);
    return page;
  };

  it('lists the pushed modules, verified in the browser against keys.json', async () => {
    const page = await open();
    expect(await verdict(page)).toBe('verified');
    const keys = (await (await fetch(`${url}/keys.json`)).json()) as { keys: { keyid: string }[] };
    const signature = await page.textContent('#signature');
    expect(signature).toContain('Signature verified');
    expect(signature).toContain(keys.keys[0]!.keyid);
    const index = (await (await fetch(`${url}/${v2Keys.index}`)).json()) as { payload: string };
    const payload = JSON.parse(Buffer.from(index.payload, 'base64').toString('utf8')) as { version: number };
    expect(await page.textContent('#facts')).toContain(`version ${payload.version} (v2 signed index)`);
    expect(await page.textContent('#count')).toBe('4 modules');

    const name = `${harness.registry.host}/plugins/basic-auth`;
    const sha = sha256Of(pushed.get(name)!);
    const row = page.locator('#modules tbody tr', { hasText: 'basic-auth' });
    const cells = await row.locator('td').allTextContents();
    expect(cells[0]).toBe(name);
    expect(cells[1]).toBe('1.4.2');
    expect(cells[2]).toContain(sha.slice(0, 12));
    expect(cells[3]).toMatch(/^\d+ B$|KiB$/);
    expect(cells[4]).toBe('wasm-artifact');
    expect(cells[5]).toBe('proxy_abi_version_0_2_1');
    expect(cells[6]).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
    const component = await page
      .locator('#modules tbody tr', { hasText: 'geo-component' })
      .locator('td')
      .allTextContents();
    expect(component[5]).toBe('component');
    // The embedded server has /status: its part of the page is shown.
    expect(await page.isVisible('#embedded')).toBe(true);
    expect(await page.isHidden('#static-note')).toBe(true);
    await page.close();
  });

  it('copies the sha256 and a WasmPlugin whose URL serves bytes with the pinned sha256', async () => {
    await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: url });
    const page = await open();
    expect(await verdict(page)).toBe('verified');
    const name = `${harness.registry.host}/plugins/rate-limit`;
    const sha = sha256Of(pushed.get(name)!);
    const row = page.locator('#modules tbody tr', { hasText: 'rate-limit' });
    await row.getByRole('button', { name: `Copy the sha256 of ${name}:0.9.0` }).click();
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(sha);
    expect(await page.textContent('#announcer')).toContain('Copied the sha256');

    await row.getByRole('button', { name: `Copy a WasmPlugin for ${name}:0.9.0` }).click();
    const yaml = await page.evaluate(() => navigator.clipboard.readText());
    const doc = parseYaml(yaml) as {
      apiVersion: string;
      kind: string;
      metadata: { name: string; namespace: string; annotations: Record<string, string> };
      spec: { url: string; sha256: string; selector: { matchLabels: Record<string, string> } };
    };
    expect(doc.apiVersion).toBe('extensions.istio.io/v1alpha1');
    expect(doc.kind).toBe('WasmPlugin');
    expect(doc.metadata.name).toBe('rate-limit');
    expect(doc.metadata.annotations['wasm-mirror/module']).toBe(`${name}:0.9.0`);
    expect(doc.spec.sha256).toBe(sha);
    expect(doc.spec.url).toBe(`${url}/modules/sha256/${sha}.wasm`);
    expect(Object.values(doc.spec.selector.matchLabels)[0]).toMatch(/^REPLACE-/);
    const served = new Uint8Array(await (await fetch(doc.spec.url)).arrayBuffer());
    expect(sha256Of(served)).toBe(sha);

    // The URL the YAML uses is editable (the mirror's HTTPS address as the proxies reach it).
    await page.fill('#mirror-url', 'https://wasm-mirror.example.com/');
    await row.getByRole('button', { name: `Copy a WasmPlugin for ${name}:0.9.0` }).click();
    const edited = parseYaml(await page.evaluate(() => navigator.clipboard.readText())) as typeof doc;
    expect(edited.spec.url).toBe(`https://wasm-mirror.example.com/modules/sha256/${sha}.wasm`);
    await page.close();
  });

  it('is usable from the keyboard, with every control labelled', async () => {
    const page = await open();
    expect(await verdict(page)).toBe('verified');
    const unlabelled = await page.$$eval('input', (inputs) =>
      inputs.filter((i) => (i as HTMLInputElement).labels?.length === 0).map((i) => i.id),
    );
    expect(unlabelled).toEqual([]);
    const nameless = await page.$$eval(
      'button',
      (buttons) =>
        buttons.filter(
          (b) => !b.hidden && (b.getAttribute('aria-label') ?? b.textContent ?? '').trim() === '',
        ).length,
    );
    expect(nameless).toBe(0);
    // Tab from the top reaches the filter; typing filters; Enter on a header sorts.
    await page.focus('body');
    let focused = '';
    for (let i = 0; i < 20 && focused !== 'filter'; i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate(() => document.activeElement?.id ?? '');
    }
    expect(focused).toBe('filter');
    await page.keyboard.type('header');
    expect(await page.locator('#modules tbody tr[data-i]').count()).toBe(1);
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Backspace');
    await page.focus('button[data-sort="tag"]');
    await page.keyboard.press('Enter');
    expect(await page.getAttribute('th:has(button[data-sort="tag"])', 'aria-sort')).toBe('ascending');
    await page.keyboard.press('Enter');
    expect(await page.getAttribute('th:has(button[data-sort="tag"])', 'aria-sort')).toBe('descending');
    expect(await page.locator('#modules tbody tr:first-child td:nth-child(2)').textContent()).toBe('2.0.1');
    await page.close();
  });

  it('shows sources with webhook URL, allow-list and warnings, and failures and dead letters', async () => {
    // Wrong secrets at `limited`: authentication failures, then its rate limit.
    const answers: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`${url}/hooks/limited`, {
        method: 'POST',
        headers: { authorization: 'Bearer wrong', 'content-type': DISTRIBUTION_EVENTS_V1 },
        body: '{}',
      });
      await res.arrayBuffer();
      answers.push(res.status);
    }
    expect(answers).toContain(401);
    expect(answers).toContain(429);
    // A permanent failure (not Wasm), and a job for a registry that is not there (dead letter).
    await pushWasm(
      harness.registry.host,
      'plugins/not-wasm:1.0',
      new TextEncoder().encode('#!/bin/sh\necho not wasm\n'),
      'wasm-artifact',
    );
    const gone = await fetch(`${url}/hooks/gone`, {
      method: 'POST',
      headers: { authorization: `Bearer ${GONE_TOKEN}`, 'content-type': DISTRIBUTION_EVENTS_V1 },
      body: distributionEnvelope([
        {
          repository: 'plugins/vanished',
          tag: '1.0',
          digest: `sha256:${'1'.repeat(64)}`,
          host: '127.0.0.1:9',
        },
      ]),
    });
    expect(gone.status).toBe(202);
    const settled = await until(async () => {
      const s = await status();
      const failure = s.recentFailures.find((f) => f.reference.includes('not-wasm'));
      const dead = s.deadLetters.find((d) => d.job.repository === 'plugins/vanished');
      return failure !== undefined && dead !== undefined ? { failure, dead } : undefined;
    });

    const page = await open();
    expect(await verdict(page)).toBe('verified');
    const local = page.locator('[data-source="local"]');
    expect(await local.textContent()).toContain(`${url}/hooks/local`);
    expect(await local.locator('.chips').textContent()).toBe('plugins/**');
    expect(await local.locator('.warnings').count()).toBe(0);

    const limited = page.locator('[data-source="limited"]');
    expect(await limited.locator('.chips li').allTextContents()).toEqual(['team-a/*', 'team-b/**']);
    const limitedWarnings = await limited.locator('.warnings').textContent();
    expect(limitedWarnings).toMatch(/\d+ deliver(y|ies) failed authentication in the last 60 minutes/);
    expect(limitedWarnings).toMatch(/refused by the rate limit \(1 job a minute\)/);

    const quay = page.locator('[data-source="quay-acme"]');
    expect(await quay.textContent()).toContain(`${url}/hooks/quay-acme/<secret>`);
    expect(await quay.locator('.warnings').textContent()).toContain(
      'The webhook secret QUAY_TOKEN is not set',
    );

    const failures = await page.locator('#failures tr', { hasText: 'not-wasm' }).textContent();
    expect(failures).toContain(settled.failure.code);
    expect(settled.failure.code).toBe('NOT_WASM');
    const dead = await page.locator('#dead-letters tr', { hasText: 'plugins/vanished' }).textContent();
    expect(dead).toContain(settled.dead.error.code);
    expect(dead).toContain('127.0.0.1:9/plugins/vanished:1.0');

    await screenshot(page, 'embedded');
    // The README's picture: `UPDATE_DOCS_SCREENSHOT=1 npx vitest run test/status-page` refreshes it.
    if (process.env.UPDATE_DOCS_SCREENSHOT === '1') {
      const shot = await screenshot(page, 'readme', true);
      copyFileSync(shot, fileURLToPath(new URL('../../docs/status-page.png', import.meta.url)));
    }
    await page.close();
  });

  it('turns red when a tampered index is served in front of the same mirror', async () => {
    const real = new Uint8Array(await (await fetch(`${url}/${v2Keys.index}`)).arrayBuffer());
    const tampered = tamperEnvelope(real, (p) => {
      p.version = (p.version as number) + 1000;
    });
    const proxy = await startTamperingProxy(url, { [`/${v2Keys.index}`]: tampered });
    try {
      const page = await open(`${proxy.url}/`);
      expect(await verdict(page)).toBe('failed');
      const box = page.locator('#signature');
      expect(await box.textContent()).toContain('Signature does not verify');
      expect(await box.getAttribute('data-state')).not.toBe('verified');
      expect(await page.locator('#modules tbody tr[data-i]').count()).toBe(0);
      expect(await page.textContent('#count')).toContain('Nothing is listed');
      await screenshot(page, 'embedded-tampered-index', false);
      await page.close();
    } finally {
      await proxy.stop();
    }
  });
});

/** Forwards GETs to the mirror, except the paths given, which get the bytes given. */
async function startTamperingProxy(
  target: string,
  replace: Record<string, Uint8Array>,
): Promise<{ url: string; stop(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const forged = replace[path];
    if (forged !== undefined) {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': forged.length });
      res.end(forged);
      return;
    }
    fetch(`${target}${req.url}`)
      .then(async (upstream) => {
        const body = Buffer.from(await upstream.arrayBuffer());
        res.writeHead(upstream.status, {
          'content-type': upstream.headers.get('content-type') ?? 'application/octet-stream',
          'content-length': body.length,
        });
        res.end(body);
      })
      .catch(() => {
        res.writeHead(502);
        res.end();
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
