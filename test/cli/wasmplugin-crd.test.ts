/**
 * Every WasmPlugin `wasmplugin` prints is one the Kubernetes API server would admit: it validates
 * against Istio's own CRD schema (test/fixtures/istio/, copied from istio/api) and passes the
 * CRD's CEL rules, each translated by hand below.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildPayload } from '../../shared/core/manifest/index.ts';
import { runCli } from '../support/index.ts';

type Schema = Record<string, unknown> & {
  properties?: Record<string, Schema>;
  additionalProperties?: Schema | boolean;
  items?: Schema;
  'x-kubernetes-validations'?: { rule: string; message: string }[];
};

const FIXTURE = join(import.meta.dirname, '..', 'fixtures', 'istio', 'wasmplugin-v1alpha1-schema.yaml');
const crdSchema = (parse(readFileSync(FIXTURE, 'utf8')) as { openAPIV3Schema: Schema }).openAPIV3Schema;

/** The scheme as Go's url.ParseRequestURI would give it, for the absolute URLs checked here. */
function scheme(text: string): string | undefined {
  try {
    return new URL(text).protocol.slice(0, -1);
  } catch {
    return undefined;
  }
}

/** Each CEL rule of the CRD, by its exact text, as the JavaScript it means. */
const CEL: Record<string, (self: unknown) => boolean> = {
  '!self.contains("*")': (self) => !(self as string).includes('*'),
  'self.all(key, !key.contains("*"))': (self) => Object.keys(self as object).every((k) => !k.includes('*')),
  'self.all(key, key.size() != 0)': (self) => Object.keys(self as object).every((k) => k.length !== 0),
  'self.size() == 0': (self) => (self as string).length === 0,
  'isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) &&\nurl("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])':
    (self) => {
      const allowed = ['', 'http', 'https', 'oci', 'file'];
      const own = scheme(self as string);
      if (own !== undefined) return allowed.includes(own);
      const prefixed = scheme(`http://${self as string}`);
      return prefixed !== undefined && allowed.includes(prefixed);
    },
  '(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)': (self) => {
    const env = self as { valueFrom?: string; value?: string };
    return (env.valueFrom ?? '') !== 'HOST' || !('value' in env);
  },
  '(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1': (
    self,
  ) => ['selector', 'targetRef', 'targetRefs'].filter((k) => k in (self as object)).length <= 1,
};

function* rulesIn(schema: Schema): Generator<string> {
  for (const v of schema['x-kubernetes-validations'] ?? []) yield v.rule;
  for (const child of Object.values(schema.properties ?? {})) yield* rulesIn(child);
  if (typeof schema.additionalProperties === 'object') yield* rulesIn(schema.additionalProperties);
  if (schema.items) yield* rulesIn(schema.items);
}

/** Runs the CEL rules where the API server would: on each value its schema node carries rules for. */
function celErrors(schema: Schema, value: unknown, path = ''): string[] {
  const errors: string[] = [];
  for (const { rule, message } of schema['x-kubernetes-validations'] ?? []) {
    const check = CEL[rule];
    if (check === undefined) throw new Error(`no translation of the CEL rule ${JSON.stringify(rule)}`);
    if (!check(value)) errors.push(`${path || '.'}: ${message}`);
  }
  if (Array.isArray(value) && schema.items)
    value.forEach((v, i) => {
      errors.push(...celErrors(schema.items!, v, `${path}[${i}]`));
    });
  else if (typeof value === 'object' && value !== null) {
    for (const [key, v] of Object.entries(value)) {
      const child =
        schema.properties?.[key] ??
        (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      if (child) errors.push(...celErrors(child, v, `${path}.${key}`));
    }
  }
  return errors;
}

/**
 * The CRD schema as the API server applies it on `kubectl apply` (strict field validation, the
 * default): unknown fields are errors except under x-kubernetes-preserve-unknown-fields, and the
 * object's own apiVersion, kind and metadata are checked by Kubernetes' rules for them.
 */
function strict(schema: Schema): Schema {
  const copy: Schema = { ...schema };
  if (copy.properties) {
    copy.properties = Object.fromEntries(Object.entries(copy.properties).map(([k, v]) => [k, strict(v)]));
    if (copy['x-kubernetes-preserve-unknown-fields'] !== true && copy.additionalProperties === undefined)
      copy.additionalProperties = false;
  }
  if (typeof copy.additionalProperties === 'object')
    copy.additionalProperties = strict(copy.additionalProperties);
  if (copy.items) copy.items = strict(copy.items);
  return copy;
}

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
const QUALIFIED_NAME =
  '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$';

function compile(): ValidateFunction {
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false });
  // Kubernetes extensions: annotations for ajv; the CEL rules run in celErrors.
  ajv.addVocabulary([
    'x-kubernetes-validations',
    'x-kubernetes-preserve-unknown-fields',
    'x-kubernetes-list-type',
    'x-kubernetes-list-map-keys',
    'x-kubernetes-int-or-string',
  ]);
  ajv.addFormat('int32', {
    type: 'number',
    validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n <= 2 ** 31 - 1,
  });
  ajv.addFormat('date-time', /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/);
  const root = strict(crdSchema);
  root.properties = {
    apiVersion: { const: 'extensions.istio.io/v1alpha1' },
    kind: { const: 'WasmPlugin' },
    metadata: {
      type: 'object',
      required: ['name', 'namespace'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', maxLength: 253, pattern: DNS_SUBDOMAIN },
        namespace: { type: 'string', maxLength: 63, pattern: DNS_LABEL },
        annotations: {
          type: 'object',
          propertyNames: { pattern: QUALIFIED_NAME },
          additionalProperties: { type: 'string' },
        },
      },
    },
    ...root.properties,
  };
  root.required = ['apiVersion', 'kind', 'metadata', ...((root.required as string[]) ?? [])];
  return ajv.compile(root);
}

let validate: ValidateFunction;

/** What the API server would say about a document: schema errors, then CEL rule failures. */
function admission(doc: unknown): string[] {
  const ok = validate(doc);
  const schemaErrors = ok ? [] : (validate.errors ?? []).map((e) => `${e.instancePath || '.'} ${e.message}`);
  return [...schemaErrors, ...celErrors(crdSchema, doc)];
}

const MIRROR = 'https://mirror.example.com';
const HEX = 'c'.repeat(64);
let work: string;
let manifest: string;

const cli = (...argv: string[]) => runCli(argv);

beforeAll(() => {
  validate = compile();
  work = mkdtempSync(join(tmpdir(), 'wm-wasmplugin-crd-'));
  manifest = join(work, 'manifest.json');
  const payload = buildPayload({
    mirror: 'prod-mesh',
    version: 3,
    modules: [
      {
        name: '127.0.0.1:5000/plugins/Rate_Limit',
        tag: 'latest',
        ociDigest: `sha256:${'d'.repeat(64)}`,
        sha256: HEX,
        size: 10,
        format: 'wasm-artifact',
        mirroredAt: '2026-01-10T11:59:58.000Z',
      },
    ],
  });
  writeFileSync(manifest, JSON.stringify(payload));
  writeFileSync(
    join(work, 'config.yaml'),
    'realm: ingress\nyes: on\nrules:\n  - {path: /admin, allow: false}\n',
  );
  writeFileSync(join(work, 'config.json'), '{"limits": {"rps": 100, "burst": 2.5}, "tags": [], "empty": {}}');
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the WasmPlugin CRD schema fixture', () => {
  it('has a hand translation of every CEL rule it carries', () => {
    // Act
    const rules = [...rulesIn(crdSchema)];
    // Assess
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) expect(Object.keys(CEL)).toContain(rule);
  });

  it('refuses what the API server refuses', () => {
    // Prepare
    const good = {
      apiVersion: 'extensions.istio.io/v1alpha1',
      kind: 'WasmPlugin',
      metadata: { name: 'p', namespace: 'apps' },
      spec: { url: `${MIRROR}/x.wasm`, sha256: HEX },
    };
    const spec = (extra: Record<string, unknown>) => ({ ...good, spec: { ...good.spec, ...extra } });
    const refusals: [unknown, RegExp][] = [
      [spec({ phase: 'AUTH' }), /\/spec\/phase must be equal to one of the allowed values/],
      [spec({ priority: 2 ** 31 }), /\/spec\/priority must match format "int32"/],
      [spec({ sha256: 'ABC' }), /\/spec\/sha256 must match pattern/],
      [spec({ selectr: {} }), /\/spec must NOT have additional properties/],
      [spec({ failStrategy: 'FAIL_SOMETIMES' }), /\/spec\/failStrategy must be equal to one of/],
      [spec({ pluginConfig: [1] }), /\/spec\/pluginConfig must be object/],
      [
        spec({ targetRefs: [{ kind: 'Gateway' }] }),
        /\/spec\/targetRefs\/0 must have required property 'name'/,
      ],
      [
        spec({ selector: { matchLabels: { a: 'b' } }, targetRefs: [{ kind: 'Gateway', name: 'g' }] }),
        /only one of targetRefs or selector can be set/,
      ],
      [spec({ selector: { matchLabels: { 'a*': 'b' } } }), /wildcard not allowed in label key match/],
      [spec({ selector: { matchLabels: { a: 'b*' } } }), /wildcard not allowed in label value match/],
      [spec({ targetRefs: [{ kind: 'Gateway', name: 'g', namespace: 'x' }] }), /cross namespace referencing/],
      [spec({ url: 'ftp://host/x.wasm' }), /url must have schema one of/],
      [{ ...good, metadata: { name: 'Bad_Name', namespace: 'apps' } }, /\/metadata\/name must match pattern/],
      [{ ...good, kind: 'WasmPlugins' }, /\/kind must be equal to constant/],
    ];
    // Act / Assess
    expect(admission(good)).toEqual([]);
    for (const [doc, expected] of refusals) expect(admission(doc).join('\n')).toMatch(expected);
  });
});

describe('wasmplugin output against the CRD', () => {
  const placements: { args: string[]; namespace: string; check(spec: Record<string, unknown>): void }[] = [
    {
      args: ['--namespace', 'apps'],
      namespace: 'apps',
      check: (s) => expect(s).not.toHaveProperty('selector'),
    },
    {
      args: ['--selector', 'istio=ingressgateway'],
      namespace: 'istio-system',
      check: (s) => expect(s.selector).toEqual({ matchLabels: { istio: 'ingressgateway' } }),
    },
    {
      args: ['--namespace', 'apps', '--selector', 'app.kubernetes.io/name=web', '--selector', 'canary='],
      namespace: 'apps',
      check: (s) =>
        expect(s.selector).toEqual({ matchLabels: { 'app.kubernetes.io/name': 'web', canary: '' } }),
    },
    {
      args: ['--mesh-wide'],
      namespace: 'istio-system',
      check: (s) => expect(s).not.toHaveProperty('targetRefs'),
    },
    {
      args: ['--root-namespace', 'istio-config', '--mesh-wide'],
      namespace: 'istio-config',
      check: (s) => expect(s).not.toHaveProperty('selector'),
    },
    {
      args: [
        '--namespace',
        'apps',
        '--target-ref',
        'Gateway/public',
        '--target-ref',
        'Service/reviews',
        '--target-ref',
        'ServiceEntry/payments.api',
      ],
      namespace: 'apps',
      check: (s) =>
        expect(s.targetRefs).toEqual([
          { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'public' },
          { group: '', kind: 'Service', name: 'reviews' },
          { group: 'networking.istio.io', kind: 'ServiceEntry', name: 'payments.api' },
        ]),
    },
    {
      args: ['--target-ref', 'GatewayClass/istio'],
      namespace: 'istio-system',
      check: (s) =>
        expect(s.targetRefs).toEqual([
          { group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio' },
        ]),
    },
    {
      args: [
        '--namespace',
        'apps',
        ...Array.from({ length: 16 }, (_, i) => ['--target-ref', `Gateway/g${i}`]).flat(),
      ],
      namespace: 'apps',
      check: (s) => expect(s.targetRefs).toHaveLength(16),
    },
  ];
  const sources: { args: string[]; url: string }[] = [
    { args: ['--mirror-url', MIRROR], url: `${MIRROR}/modules/sha256/${HEX}.wasm` },
    {
      args: ['--local-dir', '/var/lib/wasm-mirror'],
      url: `file:///var/lib/wasm-mirror/modules/sha256/${HEX}.wasm`,
    },
    {
      args: ['--local-dir', '/var/lib/wasm-mirror', '--mirror-url', MIRROR],
      url: `file:///var/lib/wasm-mirror/modules/sha256/${HEX}.wasm`,
    },
  ];
  const phases = [undefined, 'AUTHN', 'AUTHZ', 'STATS', 'UNSPECIFIED_PHASE'];
  const failStrategies = [undefined, 'FAIL_CLOSE', 'FAIL_OPEN'];
  const extras: { args: () => string[]; remoteOnly?: boolean; check(spec: Record<string, unknown>): void }[] =
    [
      { args: () => [], check: (s) => expect(s).not.toHaveProperty('priority') },
      { args: () => ['--priority=-2147483648'], check: (s) => expect(s.priority).toBe(-(2 ** 31)) },
      {
        args: () => ['--priority', '2147483647', '--plugin-config', join(work, 'config.yaml')],
        check: (s) => {
          expect(s.priority).toBe(2 ** 31 - 1);
          expect(s.pluginConfig).toEqual({
            realm: 'ingress',
            yes: 'on',
            rules: [{ path: '/admin', allow: false }],
          });
        },
      },
      {
        args: () => ['--plugin-config', join(work, 'config.json'), '--resource-name', 'rate-limit.v2'],
        check: (s) =>
          expect(s.pluginConfig).toEqual({ limits: { rps: 100, burst: 2.5 }, tags: [], empty: {} }),
      },
      {
        args: () => ['--image-pull-policy', 'Always'],
        remoteOnly: true,
        check: (s) => expect(s.imagePullPolicy).toBe('Always'),
      },
    ];

  it('validates every placement with every source and the other flags, through all phases and fail strategies', async () => {
    // Prepare
    let run = 0;
    const pairs = new Set<string>();
    // Act / Assess
    for (const placement of placements)
      for (const source of sources)
        for (const extra of extras) {
          const local = source.args.includes('--local-dir');
          if (extra.remoteOnly && local) continue;
          // Consecutive runs step through all 15 (phase, fail strategy) pairs.
          const phase = phases[run % phases.length];
          const failStrategy = failStrategies[run % failStrategies.length];
          pairs.add(`${phase}/${failStrategy}`);
          run++;
          const args = [
            ...source.args,
            ...placement.args,
            ...(phase ? ['--phase', phase] : []),
            ...(failStrategy ? ['--fail-strategy', failStrategy] : []),
            ...extra.args(),
          ];
          const r = await cli(
            'wasmplugin',
            '127.0.0.1:5000/plugins/Rate_Limit',
            '--from-manifest',
            manifest,
            ...args,
          );
          const label = args.join(' ');
          expect(r.code, `${label}\n${r.err}`).toBe(0);
          // Read as kubectl reads it (YAML 1.1), then admitted as the API server would.
          const doc = parse(r.out, { version: '1.1' });
          expect(admission(doc), label).toEqual([]);
          expect(doc.metadata.namespace, label).toBe(placement.namespace);
          const spec = doc.spec as Record<string, unknown>;
          expect(spec.url, label).toBe(source.url);
          expect(spec.sha256, label).toBe(HEX);
          expect(spec.phase, label).toBe(phase);
          expect(spec.failStrategy, label).toBe(failStrategy);
          if (local) expect(spec, label).not.toHaveProperty('imagePullPolicy');
          else expect(['IfNotPresent', 'Always'], label).toContain(spec.imagePullPolicy);
          placement.check(spec);
          extra.check(spec);
        }
    // Assess
    expect(run).toBe(placements.length * (sources.length * extras.length - 2));
    expect(pairs.size).toBe(phases.length * failStrategies.length);
  });
});
