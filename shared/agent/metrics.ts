/**
 * The agent's Prometheus series. Where Istio's own agent has a series for the same fact, the agent
 * exports it under the exact name Istio's docs give (`istio_agent_` + the name in Istio's
 * pkg/wasm/monitoring.go) with Istio's labels and values, so the dashboards and alerts operators
 * already have for Istio's Wasm fetching keep working when this agent takes over. The
 * `wasm_mirror_` series cover what Istio has no name for.
 */
import type { PrometheusRegistry } from '../platform/telemetry.ts';

export const AGENT_METRICS = {
  /** Gauge: module files in the local cache directory. */
  cacheEntries: 'istio_agent_wasm_cache_entries',
  /** Counter, `hit="true"|"false"`: one per selected module per sync. */
  cacheLookups: 'istio_agent_wasm_cache_lookup_count',
  /** Counter, `result` one of REMOTE_FETCH_RESULTS. */
  remoteFetches: 'istio_agent_wasm_remote_fetch_count',
  manifestVersion: 'wasm_mirror_manifest_version',
  manifestExpiry: 'wasm_mirror_manifest_expiry_seconds',
  /** Counter, `code`: the error code of a manifest or module that failed verification. */
  verificationFailures: 'wasm_mirror_verification_failures_total',
  /** Counter, `result="success"|"failure"`. */
  syncs: 'wasm_mirror_sync_total',
  lastSuccess: 'wasm_mirror_last_success_timestamp_seconds',
  /**
   * Counter, `document` one of MANIFEST_DOCUMENTS: bytes of manifest documents received, as sent
   * on the wire (compressed when the server compressed them), so the fleet's cost can be observed.
   */
  manifestBytes: 'wasm_mirror_manifest_bytes_total',
} as const;

/** The `document` label of manifestBytes. */
export const MANIFEST_DOCUMENTS = {
  /** manifests/v2/index.json */
  index: 'index',
  /** manifests/v2/nodes/sha256/<hex>.json: pages and bins */
  node: 'node',
  /** manifests/latest.json of a v1-only mirror */
  manifest: 'manifest',
  /** keys.json, fetched only by an agent that serves (--serve) */
  keys: 'keys',
} as const;

/**
 * Istio's `result` values for remote fetches, with what each means here: `manifest_failure` is
 * Istio's value for failing to get what describes a module (its OCI manifest); here that is the
 * signed manifest, not fetched or not verified.
 */
export const REMOTE_FETCH_RESULTS = {
  /** A module downloaded, verified and in place. */
  success: 'success',
  /** A module not downloaded: mirror unreachable, HTTP error, timeout, stall, disk. */
  downloadFailure: 'download_failure',
  /** The signed manifest could not be fetched, or failed verification. */
  manifestFailure: 'manifest_failure',
  /** A module's bytes were not the listed ones (sha256 or length). */
  checksumMismatched: 'checksum_mismatched',
} as const;

const HELP: Record<string, string> = {
  [AGENT_METRICS.cacheEntries]: 'Wasm modules in the local cache directory.',
  [AGENT_METRICS.cacheLookups]: 'Wasm module lookups in the local cache, by hit.',
  [AGENT_METRICS.remoteFetches]:
    'Remote fetches of Wasm modules and of the manifest listing them, by result (success, download_failure, manifest_failure, checksum_mismatched).',
  [AGENT_METRICS.manifestVersion]: 'Version of the accepted manifest.',
  [AGENT_METRICS.manifestExpiry]: 'Seconds until the accepted manifest expires.',
  [AGENT_METRICS.verificationFailures]: 'Manifest or module verification failures, by code.',
  [AGENT_METRICS.syncs]: 'Sync attempts, by result.',
  [AGENT_METRICS.lastSuccess]: 'Unix time of the last successful sync.',
  [AGENT_METRICS.manifestBytes]:
    'Bytes of manifest documents received (as sent, compressed or not), by document (index, node, manifest, keys).',
};

/**
 * Describes every series and starts the fixed label sets at 0: a counter series that first
 * appears at 1 has no earlier sample, so `rate()` and `increase()` would miss that first event.
 */
export function registerAgentMetrics(metrics: PrometheusRegistry): void {
  for (const [name, help] of Object.entries(HELP)) metrics.describe(name, help);
  for (const hit of ['true', 'false']) metrics.count(AGENT_METRICS.cacheLookups, { hit }, 0);
  for (const result of Object.values(REMOTE_FETCH_RESULTS)) {
    metrics.count(AGENT_METRICS.remoteFetches, { result }, 0);
  }
  for (const result of ['success', 'failure']) metrics.count(AGENT_METRICS.syncs, { result }, 0);
  for (const document of Object.values(MANIFEST_DOCUMENTS)) {
    metrics.count(AGENT_METRICS.manifestBytes, { document }, 0);
  }
}
