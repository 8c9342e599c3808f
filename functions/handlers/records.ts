/**
 * What arrives on the queues. The mirror queue carries MirrorJobs from the webhook function and,
 * straight from EventBridge, "ECR Image Action" events; the publish queue carries
 * PublishRequests. Bodies are checked here, at the edge, before a use case sees them.
 */
import type { MirrorConfig } from '../../shared/core/config.ts';
import { MANIFEST_TYPE, type MirrorJob, type ModuleRecord } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { toManifestModule, validatePayload } from '../../shared/core/manifest/index.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import { ecrHost } from '../../shared/core/sources/ecr.ts';
import { parseEcrTrusted } from '../../shared/core/sources/index.ts';

export type MirrorMessage =
  | { kind: 'jobs'; jobs: MirrorJob[] }
  | { kind: 'reconcile'; sourceId: string }
  | { kind: 'ignored'; reason: string };

const MAX_BODY_BYTES = 256 * 1024;

export function parseMirrorMessage(body: string, config: MirrorConfig, receivedAt: Date): MirrorMessage {
  const value = parseJson(body);
  if (isEcrEvent(value)) return fromEcrEvent(value, body, config, receivedAt);
  if (isReconcile(value)) {
    // Sent by this stack's per-source schedule; a source since removed from the config is dropped.
    const known = config.sources.some((s) => s.id === value.sourceId && s.reconcileIntervalMs !== undefined);
    return known ? value : { kind: 'ignored', reason: `no reconciled source '${value.sourceId}'` };
  }
  if (!isMirrorJob(value)) throw malformed('not a MirrorJob');
  return { kind: 'jobs', jobs: [value] };
}

export function parsePublishRequest(body: string): PublishRequest {
  const value = parseJson(body) as Partial<PublishRequest> | undefined;
  if (value?.kind === 'resign' && ['schedule', 'startup', 'manual'].includes(String(value.reason))) {
    return { kind: 'resign', reason: value.reason as 'schedule' | 'startup' | 'manual' };
  }
  if (value?.kind === 'record' && typeof value.record === 'object' && value.record !== null) {
    const r = value.record as unknown as Record<string, unknown>;
    const strings = ['name', 'tag', 'ociDigest', 'sha256', 'format', 'kind', 'mirroredAt'];
    if (strings.every((k) => typeof r[k] === 'string') && typeof r.size === 'number') {
      // Checked against the manifest schema here, so a record that could never be signed is
      // refused at the edge instead of failing every publish it is folded into.
      checkManifestModule(value.record);
      return { kind: 'record', record: value.record };
    }
  }
  throw malformed('not a PublishRequest');
}

function checkManifestModule(record: ModuleRecord): void {
  try {
    validatePayload({
      type: MANIFEST_TYPE,
      mirror: 'record-check',
      version: 0,
      issuedAt: '2000-01-01T00:00:00Z',
      expiresAt: '2000-01-02T00:00:00Z',
      modules: [toManifestModule(record)],
    });
  } catch (err) {
    throw malformed(`not a publishable record: ${(err as Error).message}`, err);
  }
}

function isReconcile(value: unknown): value is { kind: 'reconcile'; sourceId: string } {
  const v = value as Record<string, unknown> | undefined;
  return (
    typeof v === 'object' &&
    v !== null &&
    v.kind === 'reconcile' &&
    typeof v.sourceId === 'string' &&
    Object.keys(v).length === 2
  );
}

interface EcrEvent {
  source: 'aws.ecr';
  'detail-type': 'ECR Image Action';
  account: string;
  region: string;
  detail: Record<string, unknown>;
}

function isEcrEvent(value: unknown): value is EcrEvent {
  const v = value as Partial<EcrEvent> | undefined;
  return v?.source === 'aws.ecr' && v['detail-type'] === 'ECR Image Action';
}

/**
 * The event names the account and region; only an `ecr` source configured for exactly that
 * registry host may turn it into a job, so the pull goes where the config says.
 */
function fromEcrEvent(event: EcrEvent, raw: string, config: MirrorConfig, receivedAt: Date): MirrorMessage {
  const host = ecrHost(String(event.account), String(event.region));
  const source = config.sources.find(
    (s) => s.type === 'ecr' && ecrHost(event.account, event.region, s.registry) === s.registry,
  );
  if (source === undefined) return { kind: 'ignored', reason: `no ecr source for ${host}` };
  // EventBridge delivery is authenticated by IAM (the queue policy only admits the ECR rule).
  const parsed = parseEcrTrusted(source, { body: raw, receivedAt });
  if (parsed.jobs.length === 0) {
    return { kind: 'ignored', reason: parsed.ignored.map((i) => i.reason).join(',') || 'no jobs' };
  }
  return { kind: 'jobs', jobs: parsed.jobs };
}

function isMirrorJob(value: unknown): value is MirrorJob {
  const v = value as Record<string, unknown> | undefined;
  if (typeof v !== 'object' || v === null) return false;
  const optional = (k: string) => v[k] === undefined || typeof v[k] === 'string';
  return (
    typeof v.sourceId === 'string' &&
    typeof v.registry === 'string' &&
    typeof v.repository === 'string' &&
    typeof v.receivedAt === 'string' &&
    optional('tag') &&
    optional('digest') &&
    optional('deliveryId') &&
    (v.tag !== undefined || v.digest !== undefined)
  );
}

function parseJson(body: string): unknown {
  if (body.length > MAX_BODY_BYTES) throw malformed('message body too large');
  try {
    return JSON.parse(body);
  } catch (err) {
    throw malformed('message body is not JSON', err);
  }
}

function malformed(message: string, cause?: unknown): WasmMirrorError {
  return new WasmMirrorError('SCHEMA_ERROR', message, cause === undefined ? {} : { cause });
}
