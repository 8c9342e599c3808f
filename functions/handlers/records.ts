/**
 * What arrives on the queues. The mirror queue carries MirrorJobs from the webhook function and,
 * straight from EventBridge, "ECR Image Action" events; the publish queue carries
 * PublishRequests. Bodies are checked here, at the edge, before a use case sees them.
 */
import type { z } from 'zod';
import type { MirrorConfig } from '../../shared/core/config.ts';
import { MANIFEST_TYPE, type MirrorJob, type ModuleRecord } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { toManifestModule, validatePayload } from '../../shared/core/manifest/index.ts';
import type { PublishRequest } from '../../shared/core/ports.ts';
import {
  describeIssue,
  type ecrEventSchema,
  mirrorMessageSchema,
  publishRequestSchema,
} from '../../shared/core/schemas.ts';
import { ecrHost } from '../../shared/core/sources/ecr.ts';
import { parseEcrTrusted } from '../../shared/core/sources/index.ts';

export type MirrorMessage =
  | { kind: 'jobs'; jobs: MirrorJob[] }
  | { kind: 'reconcile'; sourceId: string }
  | { kind: 'ignored'; reason: string };

const MAX_BODY_BYTES = 256 * 1024;

type EcrEvent = z.infer<typeof ecrEventSchema>;

export function parseMirrorMessage(
  body: string | unknown,
  config: MirrorConfig,
  receivedAt: Date,
): MirrorMessage {
  const parsed = mirrorMessageSchema.safeParse(typeof body === 'string' ? parseJson(body) : body);
  if (!parsed.success) throw malformed(`not a MirrorJob: ${describeIssue(parsed.error)}`);
  const value = parsed.data;
  if ('source' in value) return fromEcrEvent(value, config, receivedAt);
  if ('kind' in value) {
    // Sent by this stack's per-source schedule; a source since removed from the config is dropped.
    const known = config.sources.some((s) => s.id === value.sourceId && s.reconcileIntervalMs !== undefined);
    return known ? value : { kind: 'ignored', reason: `no reconciled source '${value.sourceId}'` };
  }
  return { kind: 'jobs', jobs: [withoutUndefined(value)] };
}

export function parsePublishRequest(body: string): PublishRequest {
  const parsed = publishRequestSchema.safeParse(parseJson(body));
  if (!parsed.success) {
    const what = parsed.error.issues[0]?.path[0] === 'record' ? 'a publishable record' : 'a PublishRequest';
    throw malformed(`not ${what}: ${describeIssue(parsed.error)}`);
  }
  const request = parsed.data;
  if (request.kind === 'resign') return request;
  const record = withoutUndefined(request.record) as ModuleRecord;
  // Checked against the manifest schema here, so a record that could never be signed is
  // refused at the edge instead of failing every publish it is folded into.
  checkManifestModule(record);
  return { kind: 'record', record };
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

/**
 * The event names the account and region; only an `ecr` source configured for exactly that
 * registry host may turn it into a job, so the pull goes where the config says.
 */
function fromEcrEvent(event: EcrEvent, config: MirrorConfig, receivedAt: Date): MirrorMessage {
  const host = ecrHost(event.account, event.region);
  const source = config.sources.find(
    (s) => s.type === 'ecr' && ecrHost(event.account, event.region, s.registry) === s.registry,
  );
  if (source === undefined) return { kind: 'ignored', reason: `no ecr source for ${host}` };
  // EventBridge delivery is authenticated by IAM (the queue policy only admits the ECR rule).
  const parsed = parseEcrTrusted(source, { body: JSON.stringify(event), receivedAt });
  if (parsed.jobs.length === 0) {
    return { kind: 'ignored', reason: parsed.ignored.map((i) => i.reason).join(',') || 'no jobs' };
  }
  return { kind: 'jobs', jobs: parsed.jobs };
}

/** zod keeps absent optional keys absent, but a JSON `undefined` never arrives; this keeps types exact. */
function withoutUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
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
