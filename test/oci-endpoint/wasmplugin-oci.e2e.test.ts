/**
 * `wasm-mirror wasmplugin --oci`: the one-host change of an `oci://` WasmPlugin. spec.sha256 is
 * the digest Istio compares for oci:// (the image manifest it loads; for an index, the entry it
 * resolves), checked here against what skopeo, resolving the index itself, copies from the mirror.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type Harness, proxyWasmModule, pushWasm, runCli, startHarness } from '../support/index.ts';
import { waitForManifest } from '../support/mirror.ts';
import { queueMirror, readDirManifest, sha256Hex, skopeoCopy } from './support.ts';

const cli = (...argv: string[]) => runCli(argv);

interface Rendered {
  metadata: { annotations: Record<string, string> };
  spec: { url: string; sha256: string; imagePullPolicy?: string };
}

describe('wasmplugin --oci', () => {
  let harness: Harness;
  let work: string;
  let keys: string;
  let mirrorHost: string;
  const digests = new Map<string, string>();

  const render = (module: string, ...args: string[]) =>
    cli(
      'wasmplugin',
      `${harness.registry.host}/${module}`,
      '--mirror-url',
      harness.mirror.url,
      '--trusted-keys',
      keys,
      '--mirror-name',
      'oci-cli',
      '--selector',
      'app=web',
      '--oci',
      ...args,
    );

  beforeAll(async () => {
    harness = await startHarness({ mirrorName: 'oci-cli' });
    mirrorHost = new URL(harness.mirror.url).host;
    work = mkdtempSync(join(tmpdir(), 'wm-oci-cli-'));
    const plugins = [
      { repository: 'plugins/artifact', format: 'wasm-artifact' as const },
      { repository: 'plugins/compat', format: 'compat-oci' as const },
      { repository: 'plugins/cncf', format: 'cncf-wasm' as const },
    ];
    for (const { repository, format } of plugins) {
      const module = proxyWasmModule({ marker: `cli ${format}` });
      digests.set(
        repository,
        (await pushWasm(harness.registry.host, `${repository}:1.0`, module, format)).digest,
      );
      await queueMirror(harness, repository, '1.0');
    }
    const indexed = proxyWasmModule({ marker: 'cli index' });
    const { digest } = await pushWasm(harness.registry.host, 'plugins/indexed:1.0', indexed, 'index', {
      indexOf: 'compat-oci',
      platform: { os: 'linux', architecture: 'amd64' },
    });
    digests.set('plugins/indexed', digest);
    await queueMirror(harness, 'plugins/indexed', '1.0');
    await waitForManifest(harness.mirror.url, (p) => p.modules.length === 4, 60_000);
    keys = join(work, 'trusted-keys.json');
    writeFileSync(keys, await (await fetch(`${harness.mirror.url}/keys.json`)).text());
  });

  afterAll(async () => {
    await harness?.stop();
    if (work !== undefined) rmSync(work, { recursive: true, force: true });
  });

  it('renders the mirror host, the source id and the tag, pinned to the image manifest digest', async () => {
    // Act
    const r = await render('plugins/artifact:1.0', '--source', 'local');
    // Assess
    expect(r.code, r.err).toBe(0);
    const doc = parse(r.out) as Rendered;
    expect(doc.spec.url).toBe(`oci://${mirrorHost}/local/plugins/artifact:1.0`);
    expect(doc.spec.sha256).toBe(digests.get('plugins/artifact')!.slice(7));
    expect(doc.metadata.annotations['wasm-mirror/oci-digest']).toBe(digests.get('plugins/artifact'));
    // Istio pulls oci:// over https unless told otherwise; the note says how for this http mirror.
    expect(r.err).toContain(`add ${mirrorHost} to istio-agent's WASM_INSECURE_REGISTRIES`);
  });

  it('pins an index to the entry Istio loads, the one skopeo copies from the mirror', async () => {
    // Act
    const r = await render('plugins/indexed:1.0', '--source', 'local');
    // Assess
    expect(r.code, r.err).toBe(0);
    const doc = parse(r.out) as Rendered;
    expect(doc.spec.url).toBe(`oci://${mirrorHost}/local/plugins/indexed:1.0`);
    const dir = join(work, 'indexed');
    await skopeoCopy(mirrorHost, 'local/plugins/indexed:1.0', dir);
    const image = sha256Hex(readDirManifest(dir).bytes);
    expect(doc.spec.sha256).toBe(image);
    expect(doc.spec.sha256).not.toBe(digests.get('plugins/indexed')!.slice(7));
  });

  it('finds the source in the config when one source pulls from the module registry', async () => {
    // Prepare
    const config = join(work, 'mirror.yaml');
    writeFileSync(
      config,
      `mirror: { name: oci-cli }\nsources:\n  - { id: local, type: distribution, registry: "${harness.registry.host}", insecure: true, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }\n`,
    );
    // Act / Assess
    const r = await render('plugins/compat:1.0', '--config', config);
    expect(r.code, r.err).toBe(0);
    expect((parse(r.out) as Rendered).spec.url).toBe(`oci://${mirrorHost}/local/plugins/compat:1.0`);
    const none = await render('plugins/compat:1.0', '--config', join(work, 'missing.yaml'));
    expect(none.code).not.toBe(0);
  });

  it("refuses a format Istio's oci:// fetcher does not load", async () => {
    // Act
    const r = await render('plugins/cncf:1.0', '--source', 'local');
    // Assess
    expect(r.code).toBe(1);
    expect(r.err).toContain('cncf-wasm');
    expect(r.err).toContain("Istio's oci:// fetcher does not load");
    expect(r.out).toBe('');
  });

  it('refuses a source that does not serve the module, and flags that cannot make an oci:// URL', async () => {
    // Act / Assess
    const wrong = await render('plugins/artifact:1.0', '--source', 'other');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain('MANIFEST_UNKNOWN');
    const withPath = await cli(
      'wasmplugin',
      `${harness.registry.host}/plugins/artifact:1.0`,
      '--mirror-url',
      `${harness.mirror.url}/prefix`,
      '--trusted-keys',
      keys,
      '--mirror-name',
      'oci-cli',
      '--oci',
      '--source',
      'local',
    );
    expect(withPath.code).toBe(2);
    expect(withPath.err).toContain('without a path');
    const local = await render(
      'plugins/artifact:1.0',
      '--source',
      'local',
      '--local-dir',
      '/var/lib/wasm-mirror',
    );
    expect(local.code).toBe(2);
    const sourceAlone = await cli(
      'wasmplugin',
      'x/y:1',
      '--mirror-url',
      harness.mirror.url,
      '--source',
      'local',
    );
    expect(sourceAlone.code).toBe(2);
  });
});
