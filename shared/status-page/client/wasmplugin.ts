/**
 * A ready Istio WasmPlugin for one verified entry, as `wasm-mirror wasmplugin --mirror-url`
 * prints it: the mirror URL of the bytes and the sha256 Istio checks them against. The selector
 * is a placeholder to edit before applying.
 */
import type { ModuleEntry } from './verify.ts';

export const SELECTOR_PLACEHOLDER = 'REPLACE-WITH-YOUR-WORKLOAD-LABEL';

/** metadata.name from the module's last path segment, as the CLI derives it. */
export function resourceName(moduleName: string): string {
  const base = moduleName.split('/').pop() ?? moduleName;
  const cleaned = base
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/, '');
  return cleaned || 'wasm-plugin';
}

/** A double-quoted YAML scalar: JSON string syntax is valid YAML and needs no further quoting rules. */
const q = (value: string) => JSON.stringify(value);

export function wasmPluginYaml(m: ModuleEntry, mirrorUrl: string, manifestVersion: number): string {
  const base = mirrorUrl.replace(/\/+$/, '');
  return [
    'apiVersion: extensions.istio.io/v1alpha1',
    'kind: WasmPlugin',
    'metadata:',
    `  name: ${resourceName(m.name)}`,
    '  namespace: istio-system',
    '  annotations:',
    `    wasm-mirror/module: ${q(`${m.name}:${m.tag}`)}`,
    `    wasm-mirror/oci-digest: ${q(m.ociDigest)}`,
    `    wasm-mirror/manifest-version: ${q(String(manifestVersion))}`,
    'spec:',
    '  selector:',
    '    matchLabels:',
    `      app: ${SELECTOR_PLACEHOLDER}`,
    `  url: ${q(`${base}/modules/sha256/${m.sha256}.wasm`)}`,
    `  sha256: ${m.sha256}`,
    // The URL names the bytes by hash, so a cached copy can never be stale.
    '  imagePullPolicy: IfNotPresent',
    '',
  ].join('\n');
}
