/**
 * `wasm-mirror wasmplugin`: every flag lands in the field Istio reads, what Istio would refuse or
 * silently misapply is refused here with the fix, and the help and the stderr note say what Istio
 * really checks. Runs offline from an agent-style manifest.json.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { OPTIONS } from '../../shared/cli/commands/wasmplugin.ts';
import { buildPayload } from '../../shared/core/manifest/index.ts';
import { runCli } from '../support/index.ts';

const MIRROR = 'https://mirror.example.com';
const HEX = 'b'.repeat(64);
const MODULE = 'ghcr.io/acme/basic-auth:1.12.0';

let work: string;
let manifest: string;

const cli = (...argv: string[]) => runCli(argv);

/** `wasmplugin MODULE --from-manifest <agent manifest.json> ...args`. */
const render = (...args: string[]) => cli('wasmplugin', MODULE, '--from-manifest', manifest, ...args);

function file(name: string, text: string): string {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'wm-wasmplugin-'));
  const payload = buildPayload({
    mirror: 'prod-mesh',
    version: 7,
    modules: [
      {
        name: 'ghcr.io/acme/basic-auth',
        tag: '1.12.0',
        ociDigest: `sha256:${'a'.repeat(64)}`,
        sha256: HEX,
        size: 10,
        format: 'compat-image',
        mirroredAt: '2026-01-10T11:59:58.000Z',
      },
    ],
  });
  manifest = file('manifest.json', JSON.stringify(payload));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('wasmplugin --help', () => {
  it('explains every flag', async () => {
    // Act
    const r = await cli('wasmplugin', '--help');
    // Assess
    expect(r.code).toBe(0);
    for (const flag of Object.keys(OPTIONS)) expect(r.out).toContain(`--${flag}`);
  });

  it('says Istio does not check sha256 for file:// modules, and how to keep its check', async () => {
    // Act
    const { out } = await cli('wasmplugin', '--help');
    // Assess
    const text = out.replace(/\s+/g, ' ');
    expect(text).not.toMatch(/Istio checks (it )?for http\(s\) and file/);
    expect(text).toContain('Istio does not check sha256 for file:// URLs');
    expect(text).toContain(
      'The wasm-mirror agent checked the bytes against the signed manifest before writing them',
    );
    expect(text).toContain(
      'For two independent checks, use --mirror-url without --local-dir: spec.sha256 comes from the verified manifest, and Istio checks the bytes it downloads against it',
    );
    expect(text).toContain("The proxy's istio-agent downloads it and checks it against spec.sha256");
  });
});

describe('wasmplugin --local-dir note', () => {
  it('says on stderr what is and is not checked, and offers the https URL', async () => {
    // Act
    const r = await render(
      '--local-dir',
      '/var/lib/wasm-mirror',
      '--mirror-url',
      MIRROR,
      '--selector',
      'app=web',
    );
    // Assess
    expect(r.code, r.err).toBe(0);
    expect(parse(r.out).spec.url).toBe(`file:///var/lib/wasm-mirror/modules/sha256/${HEX}.wasm`);
    expect(r.err).toContain('note: Istio does not check spec.sha256 for file:// URLs');
    expect(r.err).toContain(`Envoy loads /var/lib/wasm-mirror/modules/sha256/${HEX}.wasm as it finds it`);
    expect(r.err).toMatch(
      /checked: the wasm-mirror agent verified the signed manifest and this module's size and sha256/,
    );
    expect(r.err).toMatch(/not checked: any change to the file after that/);
    expect(r.err).toContain(`the url is then ${MIRROR}/modules/sha256/${HEX}.wasm`);
    expect(r.err).toContain('which Istio downloads and checks against spec.sha256');
  });

  it('names the flag to add when no mirror URL was given', async () => {
    // Act
    const r = await render('--local-dir', '/var/lib/wasm-mirror', '--selector', 'app=web');
    // Assess
    expect(r.code, r.err).toBe(0);
    expect(r.err).toContain('<mirror>/modules/sha256/<hex>.wasm (give --mirror-url)');
  });

  it('prints no note for the https URL, which Istio checks itself', async () => {
    // Act
    const r = await render('--mirror-url', MIRROR, '--selector', 'app=web');
    // Assess
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(parse(r.out).spec).toMatchObject({
      url: `${MIRROR}/modules/sha256/${HEX}.wasm`,
      sha256: HEX,
      imagePullPolicy: 'IfNotPresent',
    });
  });
});

describe('wasmplugin flags', () => {
  it('maps each flag to its field', async () => {
    // Prepare
    const config = file(
      'config.yaml',
      'realm: ingress\nheaders:\n  - x-user\nlimit: 10\nnested: {a: [1, 2]}\n',
    );
    // Act
    const r = await render(
      '--mirror-url',
      MIRROR,
      '--namespace',
      'apps',
      '--selector',
      'app=web',
      '--selector',
      'app.kubernetes.io/version=1.0',
      '--phase',
      'AUTHZ',
      '--priority=-5',
      '--fail-strategy',
      'FAIL_OPEN',
      '--plugin-config',
      config,
      '--image-pull-policy',
      'Always',
      '--resource-name',
      'auth.v2',
    );
    // Assess
    expect(r.code, r.err).toBe(0);
    expect(parse(r.out)).toEqual({
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'WasmPlugin',
      metadata: {
        name: 'auth.v2',
        namespace: 'apps',
        annotations: {
          'wasm-mirror/module': MODULE,
          'wasm-mirror/oci-digest': `sha256:${'a'.repeat(64)}`,
          'wasm-mirror/manifest-version': '7',
        },
      },
      spec: {
        selector: { matchLabels: { app: 'web', 'app.kubernetes.io/version': '1.0' } },
        url: `${MIRROR}/modules/sha256/${HEX}.wasm`,
        sha256: HEX,
        imagePullPolicy: 'Always',
        phase: 'AUTHZ',
        priority: -5,
        failStrategy: 'FAIL_OPEN',
        pluginConfig: { realm: 'ingress', headers: ['x-user'], limit: 10, nested: { a: [1, 2] } },
      },
    });
  });

  it('maps target refs to their API groups', async () => {
    // Act / Assess
    const r = await render(
      '--mirror-url',
      MIRROR,
      '--namespace',
      'apps',
      '--target-ref',
      'Gateway/public',
      '--target-ref',
      'Service/reviews',
      '--target-ref',
      'ServiceEntry/payments-api',
    );
    expect(r.code, r.err).toBe(0);
    expect(parse(r.out).spec.targetRefs).toEqual([
      { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'public' },
      { group: '', kind: 'Service', name: 'reviews' },
      { group: 'networking.istio.io', kind: 'ServiceEntry', name: 'payments-api' },
    ]);
    const cls = await render('--mirror-url', MIRROR, '--target-ref', 'GatewayClass/istio');
    expect(cls.code, cls.err).toBe(0);
    expect(parse(cls.out).spec.targetRefs).toEqual([
      { group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio' },
    ]);
  });

  it('reads the plugin config from JSON too, and leaves out what was not asked for', async () => {
    // Prepare
    const config = file('config.json', '{"rules": [{"path": "/admin", "allow": false}], "ratio": 0.5}');
    // Act
    const r = await render('--mirror-url', MIRROR, '--namespace', 'apps', '--plugin-config', config);
    // Assess
    expect(r.code, r.err).toBe(0);
    const spec = parse(r.out).spec;
    expect(spec.pluginConfig).toEqual({ rules: [{ path: '/admin', allow: false }], ratio: 0.5 });
    for (const absent of ['selector', 'targetRefs', 'phase', 'priority', 'failStrategy'])
      expect(spec).not.toHaveProperty(absent);
  });

  it('prints strings that stay strings for kubectl, which reads YAML 1.1', async () => {
    // Prepare
    const config = file('yes.yaml', 'enabled: "yes"\nmode: "on"\ncount: "010"\n');
    // Act
    const r = await render(
      '--mirror-url',
      MIRROR,
      '--selector',
      'enabled=yes',
      '--selector',
      'on=off',
      '--plugin-config',
      config,
    );
    // Assess
    expect(r.code, r.err).toBe(0);
    const asKubectlReadsIt = parse(r.out, { version: '1.1' });
    expect(asKubectlReadsIt.spec.selector.matchLabels).toEqual({ enabled: 'yes', on: 'off' });
    expect(asKubectlReadsIt.spec.pluginConfig).toEqual({ enabled: 'yes', mode: 'on', count: '010' });
    expect(asKubectlReadsIt.metadata.annotations['wasm-mirror/manifest-version']).toBe('7');
  });

  it('prints a YAML anchor in the plugin config as plain copies', async () => {
    // Prepare
    const config = file('anchor.yaml', 'a: &x {b: 1}\nc: *x\n');
    // Act
    const r = await render('--mirror-url', MIRROR, '--namespace', 'apps', '--plugin-config', config);
    // Assess
    expect(r.code, r.err).toBe(0);
    expect(r.out).not.toMatch(/[&*]a\d/);
    expect(parse(r.out).spec.pluginConfig).toEqual({ a: { b: 1 }, c: { b: 1 } });
  });

  it('takes the root namespace from --root-namespace', async () => {
    // Act / Assess
    const inRoot = await render('--mirror-url', MIRROR, '--root-namespace', 'istio-config');
    expect(inRoot.code).toBe(2);
    expect(inRoot.err).toContain('root namespace istio-config');
    // istio-system is an ordinary namespace when the root is elsewhere: the plugin stays in it.
    const elsewhere = await render(
      '--mirror-url',
      MIRROR,
      '--root-namespace',
      'istio-config',
      '--namespace',
      'istio-system',
    );
    expect(elsewhere.code, elsewhere.err).toBe(0);
    expect(parse(elsewhere.out).metadata.namespace).toBe('istio-system');
    const meshWide = await render('--mirror-url', MIRROR, '--root-namespace', 'istio-config', '--mesh-wide');
    expect(meshWide.code, meshWide.err).toBe(0);
    expect(parse(meshWide.out).metadata.namespace).toBe('istio-config');
  });
});

describe('wasmplugin refuses', () => {
  async function refused(args: string[], code: number, ...messages: (string | RegExp)[]) {
    const r = await render(...args);
    expect(r.code, r.out).toBe(code);
    expect(r.out).toBe('');
    for (const m of messages) expect(r.err).toMatch(m);
    return r.err;
  }

  it('a plugin for every proxy in the mesh unless --mesh-wide says so', async () => {
    // Act / Assess
    const err = await refused(['--mirror-url', MIRROR], 2, /USAGE: /);
    expect(err).toContain('in the root namespace istio-system with no --selector and no --target-ref');
    expect(err).toContain('loads into every proxy in the mesh');
    for (const fix of ['--selector KEY=VALUE', '--target-ref KIND/NAME', '--namespace NS', '--mesh-wide'])
      expect(err).toContain(fix);
    await refused(['--local-dir', '/var/lib/wasm-mirror', '--namespace', 'istio-system'], 2, /--mesh-wide/);
    const ok = await render('--mirror-url', MIRROR, '--mesh-wide');
    expect(ok.code, ok.err).toBe(0);
    expect(parse(ok.out).spec).not.toHaveProperty('selector');
  });

  it('--mesh-wide where it would not be true', async () => {
    // Act / Assess
    await refused(['--mirror-url', MIRROR, '--mesh-wide', '--selector', 'a=b'], 2, /contradicts --selector/);
    await refused(
      ['--mirror-url', MIRROR, '--mesh-wide', '--target-ref', 'Gateway/g'],
      2,
      /contradicts --target-ref/,
    );
    await refused(
      ['--mirror-url', MIRROR, '--mesh-wide', '--namespace', 'apps'],
      2,
      /needs the root namespace/,
    );
  });

  it('a selector together with target refs', async () => {
    // Act / Assess
    await refused(
      ['--mirror-url', MIRROR, '--selector', 'a=b', '--target-ref', 'Gateway/g'],
      2,
      /--selector and --target-ref cannot be combined/,
    );
  });

  it('selectors that are not Kubernetes labels', async () => {
    // Act / Assess
    for (const bad of [
      'app',
      '=web',
      'app*=web',
      'app=we*b',
      'app=-web',
      `app=${'v'.repeat(64)}`,
      'Bad_/x=y',
    ]) {
      await refused(['--mirror-url', MIRROR, '--selector', bad], 2, /--selector .*expected KEY=VALUE/);
    }
    await refused(
      ['--mirror-url', MIRROR, '--selector', 'a=b', '--selector', 'a=c'],
      2,
      /label a is given twice/,
    );
  });

  it('target refs Istio cannot attach to', async () => {
    // Act / Assess
    await refused(
      ['--mirror-url', MIRROR, '--target-ref', 'Deployment/web'],
      2,
      /KIND must be one of Gateway, GatewayClass, Service, ServiceEntry/,
    );
    await refused(
      ['--mirror-url', MIRROR, '--target-ref', 'Gateway'],
      2,
      /NAME must be a Kubernetes object name/,
    );
    await refused(['--mirror-url', MIRROR, '--target-ref', 'Gateway/Public'], 2, /NAME must be/);
    await refused(['--mirror-url', MIRROR, '--target-ref', 'gateway/public'], 2, /KIND must be one of/);
    await refused(
      ['--mirror-url', MIRROR, '--namespace', 'apps', '--target-ref', 'GatewayClass/istio'],
      2,
      /GatewayClass only from the root namespace istio-system/,
    );
    await refused(
      ['--mirror-url', MIRROR, '--target-ref', 'Gateway/a', '--target-ref', 'Gateway/a'],
      2,
      /twice/,
    );
    const seventeen = Array.from({ length: 17 }, (_, i) => ['--target-ref', `Gateway/g${i}`]).flat();
    await refused(['--mirror-url', MIRROR, ...seventeen], 2, /at most 16 --target-ref/);
  });

  it('values outside what the CRD allows', async () => {
    // Prepare
    const base = ['--mirror-url', MIRROR, '--namespace', 'apps'];
    // Act / Assess
    await refused(
      [...base, '--phase', 'authn'],
      2,
      /--phase must be one of AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE/,
    );
    await refused(
      [...base, '--fail-strategy', 'FAIL_RELOAD'],
      2,
      /--fail-strategy must be one of FAIL_CLOSE, FAIL_OPEN/,
    );
    await refused(
      [...base, '--image-pull-policy', 'Never'],
      2,
      /--image-pull-policy must be one of IfNotPresent, Always/,
    );
    for (const bad of ['1.5', 'ten', '2147483648', '-2147483649', '', '0x10'])
      await refused(
        [...base, `--priority=${bad}`],
        2,
        /--priority must be an integer from -2147483648 to 2147483647/,
      );
    await refused(
      [...base, '--resource-name', 'Basic_Auth'],
      2,
      /--resource-name "Basic_Auth" is not a Kubernetes/,
    );
    await refused(
      ['--mirror-url', MIRROR, '--namespace', 'Apps'],
      2,
      /--namespace "Apps" is not a Kubernetes/,
    );
  });

  it('an image pull policy for a file:// URL, which Istio ignores', async () => {
    // Act / Assess
    await refused(
      ['--local-dir', '/var/lib/wasm-mirror', '--namespace', 'apps', '--image-pull-policy', 'Always'],
      2,
      /--image-pull-policy has no effect on file:\/\/ URLs/,
    );
    const r = await render('--local-dir', '/var/lib/wasm-mirror', '--namespace', 'apps');
    expect(r.code, r.err).toBe(0);
    expect(parse(r.out).spec).not.toHaveProperty('imagePullPolicy');
  });

  it('a --local-dir that is relative or needs escaping', async () => {
    // Act / Assess
    await refused(
      ['--local-dir', 'var/lib/wasm-mirror', '--namespace', 'apps'],
      2,
      /must be the absolute path/,
    );
    await refused(
      ['--local-dir', '/var/lib/wasm mirror', '--namespace', 'apps'],
      2,
      /characters a file:\/\/ URL/,
    );
    const r = await render('--local-dir', '/var/lib//wasm-mirror/', '--namespace', 'apps');
    expect(parse(r.out).spec.url).toBe(`file:///var/lib/wasm-mirror/modules/sha256/${HEX}.wasm`);
  });

  it('plugin configs that are not one object, naming the file and line', async () => {
    // Prepare
    const base = ['--mirror-url', MIRROR, '--namespace', 'apps', '--plugin-config'];
    const cases: [string, string, RegExp][] = [
      [
        'list.yaml',
        '# rules\n- a\n- b\n',
        /list\.yaml:2:1: holds a list; spec\.pluginConfig must be an object/,
      ],
      ['scalar.json', '\n\n"text"\n', /scalar\.json:3:1: holds a string/],
      ['number.json', '42', /number\.json:1:1: holds a number/],
      ['null.yaml', 'null\n', /null\.yaml:1:1: holds null/],
      ['array.json', '[{"a": 1}]', /array\.json:1:1: holds a list/],
      ['empty.yaml', '# nothing\n', /empty\.yaml:1:1: is empty/],
      ['dup.yaml', 'a: 1\nb: 2\na: 3\n', /dup\.yaml:3:1: Map keys must be unique$/m],
      ['broken.json', '{"a": 1,\n "b": }\n', /broken\.json:2:7: /],
      ['dup.json', '{"a": 1,\n "a": 2}', /dup\.json:2:\d+: duplicate/],
      ['two.yaml', 'a: 1\n---\nb: 2\n', /two\.yaml:2:1: holds more than one YAML document/],
      ['inf.yaml', 'a: 1\nlimit: .inf\n', /inf\.yaml:2:8: \.inf has no JSON form/],
      [
        'big.json',
        '{"id": 12345678901234567890}',
        /big\.json:1:8: 12345678901234567890 is too large to keep exactly; quote it/,
      ],
      ['key.yaml', 'a: 1\n? [x, y]\n: z\n', /key\.yaml:2:3: a key is a list or map/],
    ];
    // Act / Assess
    for (const [name, text, message] of cases) {
      const err = await refused([...base, file(name, text)], 1, /CONFIG_INVALID: --plugin-config /, message);
      expect(err).toContain(join(work, name));
    }
    await refused([...base, join(work, 'missing.yaml')], 2, /--plugin-config: cannot read .*missing\.yaml/);
  });
});
