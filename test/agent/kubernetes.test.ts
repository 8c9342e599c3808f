import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseListenAddress } from '../../shared/agent/index.ts';
import { runCli } from '../support/index.ts';

const ROOT = join(import.meta.dirname, '..', '..');
const K8S = join(ROOT, 'infra', 'kubernetes');

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are checked field by field below.
type Obj = any;

function docs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS())
    .filter((d) => d !== null);
}

/**
 * kustomize's build, for what these manifests use: resources, components (their resources and
 * strategic-merge patches of ConfigMap data), and the namespace.
 */
function build(dir: string, components: readonly string[] = []): Obj[] {
  const k = docs(join(dir, 'kustomization.yaml'))[0];
  const out: Obj[] = (k.resources as string[]).flatMap((r) => docs(join(dir, r)));
  for (const c of [...(k.components ?? []), ...components]) {
    const cdir = join(dir, c);
    const comp = docs(join(cdir, 'kustomization.yaml'))[0];
    expect(comp.kind).toBe('Component');
    out.push(...(comp.resources as string[]).flatMap((r) => docs(join(cdir, r))));
    for (const { path } of comp.patches ?? []) {
      for (const patch of docs(join(cdir, path))) {
        const target = out.find((o) => o.kind === patch.kind && o.metadata.name === patch.metadata.name);
        expect(target, `${patch.kind}/${patch.metadata.name} patched but not built`).toBeDefined();
        expect(patch.kind).toBe('ConfigMap');
        target.data = { ...target.data, ...patch.data };
      }
    }
  }
  for (const o of out) if (o.kind !== 'Namespace') o.metadata.namespace = k.namespace;
  return out;
}

function find(objs: Obj[], kind: string, name: string): Obj {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  expect(o, `${kind}/${name}`).toBeDefined();
  return o;
}

/** A container's flag value, with $(VAR) expanded from its env (ConfigMap keys or values). */
function flag(objs: Obj[], container: Obj, name: string): string | undefined {
  const arg = (container.args as string[]).find((a) => a.startsWith(`--${name}=`));
  if (arg === undefined) return undefined;
  return arg.slice(name.length + 3).replace(/\$\((\w+)\)/g, (_, v: string) => {
    const env = (container.env as Obj[]).find((e) => e.name === v);
    expect(env, `$(${v}) in ${name} has no env`).toBeDefined();
    if (env.value !== undefined) return env.value;
    const ref = env.valueFrom.configMapKeyRef;
    const value = find(objs, 'ConfigMap', ref.name).data[ref.key];
    expect(value, `ConfigMap ${ref.name} has no ${ref.key}`).toBeDefined();
    return value;
  });
}

function agentContainer(workload: Obj): Obj {
  return workload.spec.template.spec.containers.find((c: Obj) => c.name === 'agent');
}

function containerPort(container: Obj, name: string): number {
  const port = (container.ports as Obj[]).find((p) => p.name === name)?.containerPort;
  expect(port, `port ${name}`).toBeDefined();
  return port;
}

/** The non-root, read-only, no-capabilities rules, and a writable --dir that is not the root fs. */
function checkHardened(objs: Obj[], workload: Obj): void {
  const pod = workload.spec.template.spec;
  const c = agentContainer(workload);
  expect(pod.automountServiceAccountToken).toBe(false);
  expect(pod.securityContext.seccompProfile.type).toBe('RuntimeDefault');
  expect(c.securityContext).toMatchObject({
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  });
  expect(c.securityContext.runAsUser).toBeGreaterThan(0);
  const mountOf = (path: string) => (c.volumeMounts as Obj[]).find((m) => m.mountPath === path);
  const dir = flag(objs, c, 'dir')!;
  const data = mountOf(dir);
  expect(data?.readOnly).not.toBe(true);
  const keys = flag(objs, c, 'trusted-keys')!;
  const keysMount = mountOf(dirname(keys));
  expect(keysMount.readOnly).toBe(true);
  const keysVolume = pod.volumes.find((v: Obj) => v.name === keysMount.name);
  expect(find(objs, 'ConfigMap', keysVolume.configMap.name).data).toHaveProperty(keys.split('/').pop()!);
  // Metrics and probes on the port --metrics-addr binds, named as the annotations say.
  const metricsPort = containerPort(c, 'metrics');
  expect(parseListenAddress(flag(objs, c, 'metrics-addr')!)).toEqual({ host: '0.0.0.0', port: metricsPort });
  expect(workload.spec.template.metadata.annotations['prometheus.io/port']).toBe(String(metricsPort));
  expect(c.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'metrics' });
}

/** The flags `wasm-mirror agent --help` lists. */
async function agentFlags(): Promise<Set<string>> {
  const { code, out } = await runCli(['agent', '--help']);
  expect(code).toBe(0);
  return new Set(out.match(/--[a-z-]+/g));
}

describe('Kubernetes manifests', () => {
  it('alone, the DaemonSet syncs from the mirror', async () => {
    // Act
    const objs = build(K8S);
    const ds = find(objs, 'DaemonSet', 'wasm-mirror-agent');
    const c = agentContainer(ds);

    // Assess
    expect(flag(objs, c, 'mirror-url')).toMatch(/^https:\/\//);
    expect(flag(objs, c, 'mirror-name')).toBe('prod-mesh');
    expect(objs.some((o) => o.kind === 'Deployment')).toBe(false);
    checkHardened(objs, ds);
    const known = await agentFlags();
    for (const arg of c.args.slice(1)) expect(known, arg).toContain(arg.split('=')[0]);
  });

  it('with the cluster tier, node agents sync from the cluster agent’s Service, which syncs from the mirror and serves', async () => {
    // Act
    const objs = build(K8S, ['cluster-tier']);
    const ds = find(objs, 'DaemonSet', 'wasm-mirror-agent');
    const deploy = find(objs, 'Deployment', 'wasm-mirror-cluster-agent');
    const svc = find(objs, 'Service', 'wasm-mirror-cluster-agent');
    const node = agentContainer(ds);
    const cluster = agentContainer(deploy);
    const known = await agentFlags();

    // Assess: the Service selects the cluster agent's pods and reaches the port --serve binds
    const podLabels = deploy.spec.template.metadata.labels;
    expect(deploy.spec.selector.matchLabels).toEqual(podLabels);
    for (const [k, v] of Object.entries(svc.spec.selector)) expect(podLabels[k]).toBe(v);
    expect(Object.keys(ds.spec.template.metadata.labels)).not.toEqual([]);
    for (const [k, v] of Object.entries(svc.spec.selector))
      expect(ds.spec.template.metadata.labels[k] === v).toBe(false);
    const [port] = svc.spec.ports;
    const servePort = containerPort(cluster, port.targetPort);
    expect(parseListenAddress(flag(objs, cluster, 'serve')!)).toEqual({ host: '0.0.0.0', port: servePort });
    // Node agents: the Service's in-cluster address; the cluster agent: the mirror, same name
    expect(flag(objs, node, 'mirror-url')).toBe(
      `http://${svc.metadata.name}.${svc.metadata.namespace}.svc:${port.port}`,
    );
    expect(flag(objs, cluster, 'mirror-url')).toMatch(/^https:\/\//);
    expect(flag(objs, cluster, 'mirror-name')).toBe(flag(objs, node, 'mirror-name'));
    expect(flag(objs, node, 'serve')).toBeUndefined();
    // Ready only once it holds a verified set; alive while the process answers
    expect(cluster.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'metrics' });
    expect(deploy.spec.replicas).toBeGreaterThanOrEqual(1);
    expect(deploy.spec.template.spec.volumes.find((v: Obj) => v.name === 'data').emptyDir).toBeDefined();
    checkHardened(objs, deploy);
    checkHardened(objs, ds);
    for (const c of [node, cluster]) {
      expect(c.args[0]).toBe('agent');
      expect(c.args).not.toContain('--once');
      for (const arg of c.args.slice(1)) expect(known, arg).toContain(arg.split('=')[0]);
    }
  });
});
