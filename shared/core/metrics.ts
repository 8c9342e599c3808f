/**
 * Metric names the pipeline emits, one name per fact in both runtimes (Prometheus adds the
 * `wasm_mirror_` prefix embedded; CloudWatch EMF uses them as they are).
 */
import type { Metrics } from './ports.ts';

export const metricNames = {
  webhooks: 'webhooks_total',
  webhookEventsIgnored: 'webhook_events_ignored_total',
  /** Jobs of a delivery past the per-delivery cap, acknowledged but not queued. */
  webhookJobsDropped: 'webhook_jobs_dropped_total',
  /** Requests the embedded server refused before reading them (`reason`: bad-target, body-budget, body-timeout). */
  httpRequestsRefused: 'http_requests_refused_total',
  /** Connections dropped at the embedded server's connection cap. */
  httpConnectionsDropped: 'http_connections_dropped_total',
  /** Crash leftovers (temp files no live operation owns) removed from the data directory. */
  leftoversRemoved: 'leftovers_removed_total',
  mirrorResults: 'mirror_results_total',
  manifestsPublished: 'manifests_published_total',
  /** Module bytes deleted after retention unlisted them and every manifest listing them expired. */
  modulesDeleted: 'modules_deleted_total',
  /** Kept upstream manifests and blobs deleted once no listed entry had reached them for as long. */
  blobsDeleted: 'blobs_deleted_total',
  /** Names whose registry view (AWS `/v2/`) could not follow a publish this run; retried on the next. */
  registryViewFailures: 'registry_view_failures_total',
  /** Records dropped because their tag was observed later at another digest. */
  publishRecordsStale: 'publish_records_stale_total',
  publishRequestsMalformed: 'publish_requests_malformed',
  reconcileFailures: 'reconcile_failures_total',
  reconcileJobs: 'reconcile_jobs_total',
  manifestVersion: 'manifest_version',
  manifestModules: 'manifest_modules',
  /** Seconds until the manifest in force expires (negative once expired). */
  manifestExpiry: 'manifest_expiry_seconds',
  /** Seconds since the manifest in force was signed: rises when re-signing stops. */
  manifestAge: 'manifest_age_seconds',
} as const;

export interface ManifestFacts {
  version: number;
  modules: number;
  issuedAt: string;
  expiresAt: string;
}

/** The manifest gauges, from the manifest in force at `now`. */
export function recordManifestGauges(metrics: Metrics, manifest: ManifestFacts, now: Date): void {
  const at = now.getTime();
  metrics.gauge(metricNames.manifestVersion, manifest.version);
  metrics.gauge(metricNames.manifestModules, manifest.modules);
  metrics.gauge(metricNames.manifestExpiry, Math.round((Date.parse(manifest.expiresAt) - at) / 1000));
  metrics.gauge(
    metricNames.manifestAge,
    Math.max(0, Math.round((at - Date.parse(manifest.issuedAt)) / 1000)),
  );
}
