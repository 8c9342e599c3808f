/**
 * The status page as one self-contained HTML document (style and script inline), served at `/`
 * by the embedded server and uploadable as a static object next to the public documents (it
 * reads only relative URLs: keys.json, manifests/…, and `status` where that exists).
 *
 * The script is bundled by esbuild: baked into the CLI bundle by bin/build.mjs, or, when the
 * server runs from the TypeScript sources, bundled here on first use.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PAGE_STYLE, pageMarkup } from './markup.ts';

/** Set by bin/build.mjs in the CLI bundle; absent when running from the sources. */
declare const __WASM_MIRROR_STATUS_PAGE_SCRIPT__: string | undefined;

export interface StatusPage {
  html: string;
  etag: string;
  /** The policy the page also carries in a meta element, for a server that sets headers. */
  contentSecurityPolicy: string;
}

let built: Promise<StatusPage> | undefined;

/** The page, built once per process. */
export function statusPage(): Promise<StatusPage> {
  if (built === undefined) {
    built = pageScript().then(assembleStatusPage);
    // A failed build is retried on the next request rather than cached.
    built.catch(() => {
      built = undefined;
    });
  }
  return built;
}

/** The whole document, for hosting it as a static object (index.html). */
export async function statusPageHtml(): Promise<string> {
  return (await statusPage()).html;
}

async function pageScript(): Promise<string> {
  if (typeof __WASM_MIRROR_STATUS_PAGE_SCRIPT__ === 'string') return __WASM_MIRROR_STATUS_PAGE_SCRIPT__;
  // Module names in variables: the CLI bundle never takes this path and must not pull esbuild in.
  const bundler = './bundle-client.mjs';
  const esbuildName = 'esbuild';
  const [{ bundleStatusPageScript }, esbuild] = await Promise.all([
    import(bundler) as Promise<typeof import('./bundle-client.mjs')>,
    import(esbuildName) as Promise<typeof import('esbuild')>,
  ]);
  return bundleStatusPageScript(esbuild);
}

const hash = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

export function assembleStatusPage(script: string): StatusPage {
  // The script sits inside <script>: a closing tag in it would end it early.
  if (/<\/script/i.test(script)) throw new Error('the status page script contains "</script"');
  const contentSecurityPolicy = [
    "default-src 'none'",
    `script-src ${hash(script)}`,
    `style-src ${hash(PAGE_STYLE)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
  ].join('; ');
  const html = pageMarkup({ style: PAGE_STYLE, script, csp: contentSecurityPolicy });
  const etag = `"${createHash('sha256').update(html, 'utf8').digest('hex').slice(0, 32)}"`;
  return { html, etag, contentSecurityPolicy };
}

/** `GET /` and `GET /index.html` on the embedded server. */
export async function serveStatusPage(
  req: IncomingMessage,
  res: ServerResponse,
  headOnly: boolean,
): Promise<void> {
  const page = await statusPage();
  const headers: Record<string, string | number> = {
    'content-type': 'text/html; charset=utf-8',
    // Revalidated on every load: an upgraded server serves its own page at once.
    'cache-control': 'no-cache',
    etag: page.etag,
    'content-security-policy': `${page.contentSecurityPolicy}; frame-ancestors 'none'`,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
  };
  if (req.headers['if-none-match']?.split(',').some((t) => t.trim() === page.etag)) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const body = Buffer.from(page.html, 'utf8');
  res.writeHead(200, { ...headers, 'content-length': body.length });
  res.end(headOnly ? undefined : body);
}
