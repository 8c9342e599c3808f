/**
 * The status page's markup and style. They live in TypeScript (not .html / .css files) so the
 * CLI bundle carries them and an edit marks the bundle stale like any other source. The page
 * loads nothing from anywhere but its own mirror: no fonts, no CDN, system font stack only.
 */

/** Colours meet WCAG AA (4.5:1) for text on their backgrounds, in both schemes. */
export const PAGE_STYLE = `
:root{color-scheme:light dark;--bg:#ffffff;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--panel:#f6f8fa;
--ok-bg:#dafbe1;--ok-fg:#0f5323;--warn-bg:#fff8c5;--warn-fg:#6b4800;--bad-bg:#ffebe9;--bad-fg:#a0111f;
--info-bg:#ddf4ff;--info-fg:#0a3069;--focus:#0969da;--link:#0550ae}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9da7b3;--line:#30363d;
--panel:#161b22;--ok-bg:#0f2e1a;--ok-fg:#7ee2a0;--warn-bg:#2e2410;--warn-fg:#f2cc60;--bad-bg:#3a1114;
--bad-fg:#ffa198;--info-bg:#0c2d4a;--info-fg:#a5d6ff;--focus:#58a6ff;--link:#79c0ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans",sans-serif}
a{color:var(--link)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:.9em}
header,main{max-width:1200px;margin:0 auto;padding:0 16px}
header{padding-top:16px}
h1{font-size:1.5rem;margin:0 0 4px}
h2{font-size:1.15rem;margin:28px 0 8px}
.sub{color:var(--muted);margin:0}
.skip{position:absolute;left:-999px;top:0;background:var(--bg);padding:8px}
.skip:focus{left:8px}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.state{border:1px solid var(--line);border-radius:6px;padding:10px 14px;margin:8px 0;font-weight:600}
.state p{margin:4px 0 0;font-weight:400}
.state[data-state=verified]{background:var(--ok-bg);color:var(--ok-fg);border-color:currentColor}
.state[data-state=failed]{background:var(--bad-bg);color:var(--bad-fg);border-color:currentColor}
.state[data-state=missing],.state[data-state=pending]{background:var(--info-bg);color:var(--info-fg)}
.fresh{margin:8px 0;padding:6px 12px;border-radius:6px}
.fresh[data-fresh=warning]{background:var(--warn-bg);color:var(--warn-fg)}
.fresh[data-fresh=expired]{background:var(--bad-bg);color:var(--bad-fg);font-weight:600}
.fresh[data-fresh=ok]{display:none}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:8px 0}
dl.facts dt{color:var(--muted)}
dl.facts dd{margin:0;overflow-wrap:anywhere}
.note{color:var(--muted);font-size:.9em}
.toolbar{display:flex;flex-wrap:wrap;gap:8px 20px;align-items:end;margin:8px 0}
.toolbar label{display:block;font-size:.85em;color:var(--muted)}
input{font:inherit;color:inherit;background:var(--bg);border:1px solid var(--muted);border-radius:6px;padding:5px 8px}
#filter{width:22em}
#mirror-url{width:26em}
button{font:inherit;color:inherit;background:var(--panel);border:1px solid var(--muted);border-radius:6px;padding:2px 8px;cursor:pointer}
button:hover{border-color:var(--fg)}
.table-wrap{overflow-x:auto;border:1px solid var(--line);border-radius:6px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{background:var(--panel);position:sticky;top:0}
th button{border:0;background:none;padding:0;font-weight:600}
th[aria-sort=ascending] .arrow::after{content:" \\25B2"}
th[aria-sort=descending] .arrow::after{content:" \\25BC"}
td.num{text-align:right;white-space:nowrap}
td.nowrap{white-space:nowrap}
td.name{min-width:12em}
.empty{color:var(--muted);padding:12px}
.chips{margin:0;padding:0;list-style:none;display:flex;flex-wrap:wrap;gap:4px}
.chips li{background:var(--panel);border:1px solid var(--line);border-radius:4px;padding:0 6px}
.source{border:1px solid var(--line);border-radius:6px;padding:8px 14px;margin:8px 0}
.source h3{margin:4px 0;font-size:1rem}
.warnings{margin:6px 0 0;padding:0;list-style:none;color:var(--warn-fg)}
code.ref{word-break:break-all}
code.code{white-space:nowrap}
.warnings li{background:var(--warn-bg);padding:2px 6px;margin:2px 0;border-radius:4px}
`;

const SORTABLE: [key: string, label: string, cls?: string][] = [
  ['name', 'Name'],
  ['tag', 'Tag'],
  ['sha256', 'sha256'],
  ['size', 'Size', 'num'],
  ['format', 'Format'],
  ['abi', 'ABI'],
  ['mirroredAt', 'Mirrored at'],
];

const headerCells = SORTABLE.map(
  ([key, label]) =>
    `<th scope="col"${key === 'name' ? ' aria-sort="ascending"' : ''}><button type="button" data-sort="${key}">${label}<span class="arrow" aria-hidden="true"></span></button></th>`,
).join('');

/** The page with its style and script inline (one object to host), each allowed by its hash. */
export function pageMarkup(parts: { style: string; script: string; csp: string }): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="${parts.csp}">
<meta name="referrer" content="no-referrer">
<title>Wasm Mirror status</title>
<link rel="icon" href="data:,">
<style>${parts.style}</style>
</head>
<body>
<a class="skip" href="#modules-heading">Skip to the module list</a>
<header>
<h1>Wasm Mirror <span id="mirror-name"></span></h1>
<p class="sub" id="mirror-url-shown"></p>
</header>
<main>
<section aria-labelledby="trust-heading">
<h2 id="trust-heading">Manifest and signature</h2>
<div id="signature" class="state" data-state="pending" role="status">Checking the signature in this browser…</div>
<div id="freshness" class="fresh" data-fresh="ok" role="status"></div>
<dl class="facts" id="facts"></dl>
<p class="note">The signature is checked here, with this browser's WebCrypto (ECDSA P-256, SHA-256 over the
DSSE pre-authentication encoding), against the keys this mirror publishes in <a href="keys.json">keys.json</a>.
That proves the list below is what the key signed, not that the key is yours: compare the key ID with the one
your agents trust, or open this page with <code>?keyid=&lt;key ID&gt;</code> to accept that key only.</p>
</section>
<section aria-labelledby="modules-heading">
<h2 id="modules-heading" tabindex="-1">Mirrored modules</h2>
<div class="toolbar">
<div><label for="filter">Filter by name, tag, sha256, format or ABI</label>
<input id="filter" type="search" autocomplete="off" spellcheck="false" disabled></div>
<div><label for="mirror-url">Mirror URL used in copied WasmPlugins</label>
<input id="mirror-url" type="url" autocomplete="off" spellcheck="false"></div>
</div>
<p id="count" class="note" role="status"></p>
<div class="table-wrap">
<table id="modules">
<caption class="visually-hidden">Modules listed by the verified manifest. Column headers sort the list.</caption>
<thead><tr>${headerCells}<th scope="col">WasmPlugin</th></tr></thead>
<tbody></tbody>
</table>
</div>
<p><button type="button" id="more" hidden></button></p>
</section>
<section id="embedded" hidden aria-labelledby="sources-heading">
<h2 id="sources-heading">Webhook sources</h2>
<p class="note" id="queues"></p>
<div id="sources"></div>
<h2 id="failures-heading">Recent failures</h2>
<div class="table-wrap"><table aria-labelledby="failures-heading">
<thead><tr><th scope="col">At</th><th scope="col">Source</th><th scope="col">Reference</th><th scope="col">Code</th><th scope="col">Reason</th></tr></thead>
<tbody id="failures"></tbody></table></div>
<h2 id="dead-heading">Dead letters</h2>
<p class="note" id="dead-count"></p>
<div class="table-wrap"><table aria-labelledby="dead-heading">
<thead><tr><th scope="col">Dead since</th><th scope="col">Job</th><th scope="col" class="num">Attempts</th><th scope="col">Code</th><th scope="col">Reason</th></tr></thead>
<tbody id="dead-letters"></tbody></table></div>
</section>
<p class="note" id="static-note" hidden>Sources, failures and dead letters are shown by the embedded server
only (<code>wasm-mirror serve</code>); this copy of the page reads the mirror's public documents alone.</p>
</main>
<div id="announcer" class="visually-hidden" aria-live="polite"></div>
<script>${parts.script}</script>
</body>
</html>
`;
}
