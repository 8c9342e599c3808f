/**
 * A real browser for the status page suites: Debian's chromium driven by playwright-core (which
 * downloads nothing), with a fresh profile per launch. Screenshots go to artifacts/ (ignored by
 * git) for a person to look at after a run.
 */
import { accessSync, constants, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's chromium, found on PATH like every program the tests run (CHROMIUM_PATH overrides). */
export function chromiumPath(): string {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(join(dir, 'chromium'), constants.X_OK);
      return join(dir, 'chromium');
    } catch {
      // not in this directory
    }
  }
  throw new Error(
    'the status page tests need chromium on PATH: apt-get install -y chromium (Debian package chromium)',
  );
}
export const INSECURE_HOST = 'mirror.invalid';
export const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url));

export interface TestBrowser {
  context: BrowserContext;
  newPage(): Promise<Page>;
  close(): Promise<void>;
}

export async function openBrowser(): Promise<TestBrowser> {
  const executablePath = chromiumPath();
  const profile = mkdtempSync(join(tmpdir(), 'wm-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    viewport: { width: 1280, height: 900 },
    // Quiet and offline apart from the test servers: no updates, sync, QUIC or GPU.
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // A name for 127.0.0.1 that is not "localhost": a plain-http page there gets no WebCrypto.
      `--host-resolver-rules=MAP ${INSECURE_HOST} 127.0.0.1`,
    ],
  });
  return {
    context,
    newPage: () => context.newPage(),
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function screenshot(page: Page, name: string, fullPage = true): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage });
  return path;
}

/** Waits until the page has settled its verdict (verified, failed or missing). */
export async function verdict(page: Page, timeoutMs = 30_000): Promise<string> {
  await page.waitForSelector('body[data-status]', { timeout: timeoutMs });
  return (await page.getAttribute('#signature', 'data-state')) ?? '';
}
