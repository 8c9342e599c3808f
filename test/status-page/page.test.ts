/**
 * The status page without a browser: the document (size, nothing loaded from elsewhere, its
 * script and style allowed by their hashes), the page's verifier run on Node's WebCrypto against
 * what the publisher code writes, and the source warnings the embedded server reports.
 */
import { createHash, generateKeyPairSync, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { LocalKeySigner } from '../../shared/adapters/local/signer.ts';
import { MANIFEST_PAYLOAD_TYPE, MANIFEST_TYPE } from '../../shared/core/domain.ts';
import { pae } from '../../shared/core/manifest/dsse.ts';
import {
  BIN_TYPE,
  buildTree,
  INDEX_PAYLOAD_TYPE,
  INDEX_TYPE,
  inlineNodes,
  PAGE_TYPE,
  renderKeysJson,
  signPayload,
  v2Keys,
  validateIndexPayload,
  walkEntries,
} from '../../shared/core/manifest/index.ts';
import {
  derToRaw,
  type Fetcher,
  loadMirror,
  BIN_TYPE as PAGE_BIN_TYPE,
  INDEX_PAYLOAD_TYPE as PAGE_INDEX_PAYLOAD_TYPE,
  INDEX_TYPE as PAGE_INDEX_TYPE,
  MANIFEST_PAYLOAD_TYPE as PAGE_MANIFEST_PAYLOAD_TYPE,
  MANIFEST_TYPE as PAGE_MANIFEST_TYPE,
  PAGE_TYPE as PAGE_PAGE_TYPE,
  pae as pagePae,
  paths,
  readTree,
} from '../../shared/status-page/client/verify.ts';
import { resourceName, wasmPluginYaml } from '../../shared/status-page/client/wasmplugin.ts';
import { PAGE_STYLE } from '../../shared/status-page/markup.ts';
import { statusPage } from '../../shared/status-page/page.ts';
import { RECENT_WINDOW_MINUTES, WebhookActivity } from '../../shared/status-page/source-health.ts';
import { type StaticMirror, startStaticMirror, syntheticEntries, tamperEnvelope } from './static-mirror.ts';

describe('the page document', () => {
  it('is one self-contained document under 100 KB', async () => {
    const { html } = await statusPage();
    const bytes = Buffer.byteLength(html, 'utf8');
    console.log(`status page: ${bytes} bytes (${(bytes / 1024).toFixed(1)} KiB), style and script inline`);
    expect(bytes).toBeLessThan(100 * 1024);
    // Nothing from another origin: no fonts, stylesheets, scripts or images by URL.
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*["']?(?:https?:)?\/\//i);
    expect(html).not.toMatch(/@import|url\(\s*["']?(?:https?:)?\/\//i);
    expect(html).not.toMatch(/<script[^>]+src=/i);
  });

  it('allows exactly its inline script and style by hash', async () => {
    const { html, contentSecurityPolicy } = await statusPage();
    const script = /<script>([\s\S]*)<\/script>/.exec(html)![1]!;
    const style = /<style>([\s\S]*)<\/style>/.exec(html)![1]!;
    const b64 = (text: string) => createHash('sha256').update(text, 'utf8').digest('base64');
    expect(contentSecurityPolicy).toContain(`script-src 'sha256-${b64(script)}'`);
    expect(contentSecurityPolicy).toContain(`style-src 'sha256-${b64(style)}'`);
    expect(contentSecurityPolicy).toContain("default-src 'none'");
    expect(contentSecurityPolicy).toContain("connect-src 'self'");
    expect(html).toContain(`content="${contentSecurityPolicy}"`);
  });
});

describe('the page colours', () => {
  /** WCAG 2 contrast ratio of two #rrggbb colours. */
  const contrast = (a: string, b: string) => {
    const luminance = (hex: string) => {
      const [r, g, bl] = [1, 3, 5].map((i) => {
        const c = Number.parseInt(hex.slice(i, i + 2), 16) / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r! + 0.7152 * g! + 0.0722 * bl!;
    };
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi! + 0.05) / (lo! + 0.05);
  };
  const schemes = [...PAGE_STYLE.matchAll(/:root\{([^}]*)\}/g)].map((m) =>
    Object.fromEntries([...m[1]!.matchAll(/--([a-z-]+):(#[0-9a-f]{6})/g)].map((v) => [v[1]!, v[2]!])),
  );

  it('keep text at 4.5:1 or more on its background, light and dark', () => {
    expect(schemes).toHaveLength(2);
    const pairs = [
      ['fg', 'bg'],
      ['muted', 'bg'],
      ['muted', 'panel'],
      ['fg', 'panel'],
      ['link', 'bg'],
      ['ok-fg', 'ok-bg'],
      ['warn-fg', 'warn-bg'],
      ['bad-fg', 'bad-bg'],
      ['info-fg', 'info-bg'],
    ];
    for (const scheme of schemes) {
      for (const [fg, bg] of pairs) {
        expect(contrast(scheme[fg!]!, scheme[bg!]!), `${fg} on ${bg}`).toBeGreaterThanOrEqual(4.5);
      }
    }
  });
});

describe("the page's verifier, on Node's WebCrypto", () => {
  it('names the same document types as the core', () => {
    expect(PAGE_INDEX_PAYLOAD_TYPE).toBe(INDEX_PAYLOAD_TYPE);
    expect(PAGE_MANIFEST_PAYLOAD_TYPE).toBe(MANIFEST_PAYLOAD_TYPE);
    expect(PAGE_INDEX_TYPE).toBe(INDEX_TYPE);
    expect(PAGE_MANIFEST_TYPE).toBe(MANIFEST_TYPE);
    expect(PAGE_PAGE_TYPE).toBe(PAGE_TYPE);
    expect(PAGE_BIN_TYPE).toBe(BIN_TYPE);
    expect(paths.index).toBe(v2Keys.index);
    expect(paths.node('ab'.repeat(32))).toBe(v2Keys.node('ab'.repeat(32)));
    const payload = new TextEncoder().encode('{"a":"é"}');
    expect(Buffer.from(pagePae(INDEX_PAYLOAD_TYPE, payload))).toEqual(
      Buffer.from(pae(INDEX_PAYLOAD_TYPE, payload)),
    );
  });

  it('turns DER signatures into r||s that WebCrypto accepts, and refuses malformed DER', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const key = await crypto.subtle.importKey(
      'spki',
      publicKey.export({ type: 'spki', format: 'der' }),
      { name: 'ECDSA', namedCurve: 'P-256' },
      false,
      ['verify'],
    );
    // Enough signatures that some r or s have a high bit (a leading zero in DER) or are short.
    for (let i = 0; i < 64; i++) {
      const message = Buffer.from(`message ${i}`);
      const der = sign('sha256', message, privateKey);
      const raw = derToRaw(der);
      expect(raw.length).toBe(64);
      expect(await crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw, message)).toBe(true);
    }
    const good = sign('sha256', Buffer.from('x'), privateKey);
    const bad: [string, Uint8Array][] = [
      ['empty', new Uint8Array()],
      ['not a sequence', Uint8Array.from([0x31, ...good.subarray(1)])],
      ['trailing byte', Uint8Array.from([...good, 0])],
      ['truncated', good.subarray(0, good.length - 1)],
      ['negative integer', Uint8Array.from([0x30, 6, 0x02, 1, 0x80, 0x02, 1, 1])],
      ['non-minimal integer', Uint8Array.from([0x30, 7, 0x02, 2, 0x00, 0x01, 0x02, 1, 1])],
      ['integer too large', Uint8Array.from([0x30, 38, 0x02, 33, 1, ...new Array(32).fill(1), 0x02, 1, 1])],
    ];
    for (const [what, der] of bad) expect(() => derToRaw(der), what).toThrow();
  });

  /** A v2 mirror in memory, written by the publisher's own code. */
  async function memoryMirror(count: number) {
    const signer = new LocalKeySigner(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
    const files = new Map<string, Uint8Array>();
    files.set(paths.keys, Buffer.from(renderKeysJson([{ publicKey: await signer.publicKeySpki() }])));
    const tree = buildTree(syntheticEntries(count), 2);
    for (const [sha, bytes] of tree.nodes) files.set(v2Keys.node(sha), bytes);
    const index = validateIndexPayload({
      type: INDEX_TYPE,
      mirror: 'memory',
      version: 3,
      issuedAt: new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      expiresAt: new Date(Date.now() + 3600_000).toISOString().replace(/\.\d+Z$/, 'Z'),
      entries: tree.entries,
      depth: 2,
      root: tree.root,
    });
    files.set(paths.index, (await signPayload(INDEX_PAYLOAD_TYPE, index, signer)).bytes);
    const fetcher: Fetcher = async (path) => {
      const bytes = files.get(path);
      return bytes === undefined
        ? { status: 404, bytes: new Uint8Array() }
        : { status: 200, bytes: new Uint8Array(bytes) };
    };
    return { files, fetcher, keyid: await signer.keyId() };
  }

  it('lists a verified tree, and fails closed on each kind of tampering', async () => {
    const { files, fetcher, keyid } = await memoryMirror(100);
    const good = await loadMirror(fetcher, { now: new Date() });
    expect(good.state).toBe('verified');
    if (good.state !== 'verified') return;
    expect(good.keyid).toBe(keyid);
    expect(good.modules).toHaveLength(100);
    expect(good.facts).toMatchObject({ format: 'v2', mirror: 'memory', version: 3, entries: 100 });

    const failsWith = async (path: string, bytes: Uint8Array | undefined, code: string) => {
      const original = files.get(path);
      if (bytes === undefined) files.delete(path);
      else files.set(path, bytes);
      try {
        const view = await loadMirror(fetcher, { now: new Date() });
        expect(view.state, `${path} → ${code}`).toBe('failed');
        if (view.state === 'failed') expect(view.code).toBe(code);
      } finally {
        files.set(path, original!);
      }
    };
    const index = files.get(paths.index)!;
    await failsWith(
      paths.index,
      tamperEnvelope(index, (p) => {
        p.version = 4;
      }),
      'SIGNATURE_INVALID',
    );
    const envelope = JSON.parse(Buffer.from(index).toString()) as {
      payloadType: string;
      signatures: unknown[];
    };
    await failsWith(
      paths.index,
      Buffer.from(JSON.stringify({ ...envelope, payloadType: MANIFEST_PAYLOAD_TYPE })),
      'PAYLOAD_TYPE_MISMATCH',
    );
    await failsWith(
      paths.index,
      Buffer.from(JSON.stringify({ ...envelope, signatures: [] })),
      'NO_SIGNATURES',
    );
    await failsWith(paths.index, Buffer.from('{"payload":'), 'ENVELOPE_MALFORMED');
    const otherKeys = renderKeysJson([
      {
        publicKey: await new LocalKeySigner(
          generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
        ).publicKeySpki(),
      },
    ]);
    await failsWith(paths.keys, Buffer.from(otherKeys), 'UNKNOWN_KEY');
    await failsWith(paths.keys, undefined, 'KEYS_UNAVAILABLE');
    // A keys.json entry whose stated keyid belongs to another key is not trusted.
    const keysDoc = JSON.parse(Buffer.from(files.get(paths.keys)!).toString()) as {
      keys: { keyid: string }[];
    };
    keysDoc.keys[0]!.keyid = 'ab'.repeat(32);
    await failsWith(paths.keys, Buffer.from(JSON.stringify(keysDoc)), 'KEYS_UNAVAILABLE');

    const node = [...files.keys()].find((k) => k.includes('/nodes/'))!;
    const nodeText = Buffer.from(files.get(node)!).toString();
    await failsWith(node, Buffer.from(`${nodeText} `), 'NODE_HASH_MISMATCH');
    await failsWith(node, undefined, 'NODE_MISSING');
  });

  it('refuses a node that matches its pin but sits at another position', async () => {
    const { fetcher } = await memoryMirror(100);
    // The same tree's root pins with two swapped: each node is intact, but under the wrong prefix.
    const { root } = buildTree(syntheticEntries(100), 2);
    const [a, b] = root.filter((p): p is string => p !== null);
    const swapped = root.map((p) => (p === a ? b! : p === b ? a! : p));
    await expect(readTree(swapped, 2, fetcher)).rejects.toMatchObject({ code: 'NODE_INVALID' });
  });
});

/**
 * A fetcher over a static mirror's files (not its server) that records the node paths asked for
 * and the most requests it had in flight at once.
 */
function recordingFetcher(mirror: StaticMirror) {
  const nodesAsked: string[] = [];
  let inFlight = 0;
  const seen = { maxInFlight: 0 };
  const fetcher: Fetcher = async (path) => {
    if (path.includes('/nodes/')) nodesAsked.push(path);
    inFlight++;
    seen.maxInFlight = Math.max(seen.maxInFlight, inFlight);
    // A turn of the event loop, so that requests overlap as they would over a network.
    await new Promise((resolve) => setImmediate(resolve));
    inFlight--;
    const bytes = mirror.files.get(path);
    return bytes === undefined
      ? { status: 404, bytes: new Uint8Array() }
      : { status: 200, bytes: new Uint8Array(bytes) };
  };
  return { fetcher, nodesAsked, seen };
}

const nodePaths = (mirror: StaticMirror) => [...mirror.files.keys()].filter((k) => k.includes('/nodes/'));

describe("the page's tree walk, on Node's WebCrypto", () => {
  /** 600 entries (depth 2), then a publish of one more whose index carries the nodes it wrote. */
  async function publishedMirror() {
    const mirror = await startStaticMirror({ entries: syntheticEntries(600), mirror: 'carry-mesh' });
    const added = syntheticEntries(601)[600]!;
    const carried = await mirror.publish([added]);
    return { mirror, added, carried };
  }

  it('uses the nodes the index carries and requests none of them', async () => {
    // Prepare
    const { mirror, added, carried } = await publishedMirror();
    const { fetcher, nodesAsked } = recordingFetcher(mirror);
    try {
      const envelope = JSON.parse(Buffer.from(mirror.files.get(v2Keys.index)!).toString()) as {
        nodes?: unknown[];
      };
      expect(envelope.nodes).toHaveLength(carried.size);
      expect(carried.size).toBe(2); // the new bin and the page above it

      // Act
      const view = await loadMirror(fetcher, { now: new Date() });

      // Assess
      expect(view.state).toBe('verified');
      if (view.state !== 'verified') return;
      expect(view.facts.version).toBe(8);
      expect(view.modules).toHaveLength(601);
      expect(view.modules).toContainEqual(added);
      for (const sha256 of carried.keys()) expect(nodesAsked).not.toContain(v2Keys.node(sha256));
      expect(view.tree).toEqual({
        nodes: nodesAsked.length + carried.size,
        carried: carried.size,
        kept: 0,
        fetched: nodesAsked.length,
      });
    } finally {
      await mirror.stop();
    }
  });

  it('fetches instead a carried node that does not match its pin, as the agent does', async () => {
    // Prepare: the carried bin altered in transit (the field is not signed, so the signature holds).
    const { mirror, added, carried } = await publishedMirror();
    const { fetcher, nodesAsked } = recordingFetcher(mirror);
    const binPin = [...carried].find(([, bytes]) => Buffer.from(bytes).includes('"modules"'))![0];
    const envelope = JSON.parse(Buffer.from(mirror.files.get(v2Keys.index)!).toString()) as {
      nodes: { modules?: { name: string; size: number }[] }[];
    };
    for (const m of envelope.nodes.flatMap((n) => n.modules ?? [])) if (m.name === added.name) m.size = 1;
    const tampered = Buffer.from(JSON.stringify(envelope));
    mirror.files.set(v2Keys.index, tampered);
    // The agent's reading of the same envelope: the altered bin is filed under a hash no pin names.
    expect(inlineNodes(tampered).has(binPin)).toBe(false);
    try {
      // Act
      const view = await loadMirror(fetcher, { now: new Date() });

      // Assess: the signed entry, from the fetched bin; the altered copy never shown.
      expect(view.state).toBe('verified');
      if (view.state !== 'verified') return;
      expect(view.modules.find((m) => m.name === added.name)).toEqual(added);
      expect(nodesAsked).toContain(v2Keys.node(binPin));
      expect(view.tree).toMatchObject({ carried: carried.size - 1 });

      // Act: a mirror that lacks the node as well.
      mirror.files.delete(v2Keys.node(binPin));
      const missing = await loadMirror(fetcher, { now: new Date() });

      // Assess: nothing trusted in its place, nothing listed.
      expect(missing).toMatchObject({ state: 'failed', code: 'NODE_MISSING' });
    } finally {
      await mirror.stop();
    }
  });

  it('uses nodes kept from an earlier visit only where they still match their pins', async () => {
    // Prepare: a first visit's nodes, one of them altered while kept.
    const mirror = await startStaticMirror({ entries: syntheticEntries(300), mirror: 'kept-mesh' });
    try {
      const first = await loadMirror(recordingFetcher(mirror).fetcher, { now: new Date() });
      if (first.state !== 'verified' || first.nodes === undefined) throw new Error('not verified');
      const kept = new Map(first.nodes);
      const [alteredPin, original] = [...kept].find(([, b]) => Buffer.from(b).includes('"modules"'))!;
      kept.set(
        alteredPin,
        new Uint8Array(Buffer.from(Buffer.from(original).toString().replace('"size":', '"size":1'))),
      );
      const { fetcher, nodesAsked } = recordingFetcher(mirror);

      // Act
      const view = await loadMirror(fetcher, { now: new Date(), kept: Promise.resolve(kept) });

      // Assess: only the altered node is requested again, and the list is the signed one.
      expect(view.state).toBe('verified');
      if (view.state !== 'verified') return;
      expect(nodesAsked).toEqual([v2Keys.node(alteredPin)]);
      expect(view.tree).toEqual({ nodes: kept.size, carried: 0, kept: kept.size - 1, fetched: 1 });
      expect(view.modules).toEqual(first.modules);
    } finally {
      await mirror.stop();
    }
  });

  it('reads a 5,000-entry tree once per node, in bin order, with at most `concurrency` in flight', async () => {
    // Prepare
    const entries = syntheticEntries(5000);
    const mirror = await startStaticMirror({ entries, mirror: 'big-mesh' });
    const { fetcher, nodesAsked, seen } = recordingFetcher(mirror);
    try {
      // Act
      const view = await loadMirror(fetcher, { now: new Date(), concurrency: 8 });

      // Assess
      expect(view.state).toBe('verified');
      if (view.state !== 'verified') return;
      expect(view.modules).toHaveLength(5000);
      expect([...nodesAsked].sort()).toEqual(nodePaths(mirror).sort());
      expect(view.tree).toEqual({ nodes: 1343, carried: 0, kept: 0, fetched: 1343 });
      expect(seen.maxInFlight).toBe(8);
      // The core's own walk of the same tree gives the same entries in the same order.
      const envelope = JSON.parse(Buffer.from(mirror.files.get(v2Keys.index)!).toString()) as {
        payload: string;
      };
      const index = JSON.parse(Buffer.from(envelope.payload, 'base64').toString()) as {
        root: (string | null)[];
        depth: number;
      };
      const walked = [];
      for await (const m of walkEntries(index.root, index.depth, async (sha) =>
        mirror.files.get(v2Keys.node(sha)),
      ))
        walked.push(m);
      expect(view.modules).toEqual(walked);
    } finally {
      await mirror.stop();
    }
  });
});

describe('source warnings', () => {
  it('counts refused deliveries per source over the last hour', () => {
    let now = Date.UTC(2026, 0, 1, 12, 0, 0);
    const activity = new WebhookActivity(['a', 'b'], () => now);
    activity.record('a', 401);
    activity.record('a', 401);
    activity.record('a', 429);
    activity.record('a', 202);
    activity.record('unknown', 401);
    expect(activity.recent('a')).toMatchObject({ authFailures: 2, rateLimited: 1, windowMinutes: 60 });
    expect(activity.recent('a').lastAuthFailureAt).toBe('2026-01-01T12:00:00.000Z');
    expect(activity.recent('b')).toMatchObject({ authFailures: 0, rateLimited: 0, lastAuthFailureAt: null });
    now += 30 * 60_000;
    activity.record('a', 401);
    expect(activity.recent('a').authFailures).toBe(3);
    now += (RECENT_WINDOW_MINUTES - 20) * 60_000;
    expect(activity.recent('a')).toMatchObject({ authFailures: 1, rateLimited: 0, lastRateLimitedAt: null });
    now += 60 * 60_000;
    expect(activity.recent('a')).toMatchObject({ authFailures: 0, lastAuthFailureAt: null });
  });
});

describe('the copied WasmPlugin', () => {
  it('pins the URL and sha256 of the entry, with a placeholder selector', () => {
    const [entry] = syntheticEntries(1);
    const doc = parseYaml(wasmPluginYaml(entry!, 'https://mirror.example.com/', 12)) as {
      metadata: { name: string; annotations: Record<string, string> };
      spec: {
        url: string;
        sha256: string;
        selector: { matchLabels: { app: string } };
        imagePullPolicy: string;
      };
    };
    expect(doc.metadata.name).toBe('plugin-0000');
    expect(doc.metadata.annotations['wasm-mirror/manifest-version']).toBe('12');
    expect(doc.spec.url).toBe(`https://mirror.example.com/modules/sha256/${entry!.sha256}.wasm`);
    expect(doc.spec.sha256).toBe(entry!.sha256);
    expect(doc.spec.selector.matchLabels.app).toMatch(/^REPLACE-/);
    expect(doc.spec.imagePullPolicy).toBe('IfNotPresent');
    expect(resourceName('ghcr.io/acme/Basic_Auth.v2')).toBe('basic-auth-v2');
    expect(resourceName('ghcr.io/acme/---')).toBe('wasm-plugin');
  });
});
