/**
 * Schemas of the messages that cross a queue (zod): what the webhook function, EventBridge and
 * the mirror put on the queues is checked against these before a use case sees it, in both
 * runtimes. Types stay declared in domain.ts and ports.ts; `satisfies` keeps the two in step.
 */
import * as z from 'zod';
import { SHA256_DIGEST, SHA256_HEX } from './domain.ts';

const shortText = z.string().min(1).max(1024);
const isoTime = z.iso.datetime({ offset: true });

export const mirrorJobSchema = z
  .strictObject({
    sourceId: shortText,
    registry: shortText,
    repository: shortText,
    tag: shortText.optional(),
    digest: z.string().regex(SHA256_DIGEST).optional(),
    deliveryId: z.string().max(1024).optional(),
    receivedAt: isoTime,
  })
  .refine((job) => job.tag !== undefined || job.digest !== undefined, {
    message: 'a tag or a digest is required',
  });

export const moduleRecordSchema = z.strictObject({
  name: shortText,
  tag: z.string().max(128),
  ociDigest: z.string().regex(SHA256_DIGEST),
  sha256: z.string().regex(SHA256_HEX),
  size: z.number().int().nonnegative(),
  format: z.enum(['wasm-artifact', 'compat-image', 'cncf-wasm', 'wasm-artifact-1layer']),
  kind: z.enum(['module', 'component']),
  abi: z.string().max(128).optional(),
  mirroredAt: isoTime,
  observedAt: isoTime.optional(),
});

export const publishRequestSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('record'), record: moduleRecordSchema }),
  z.strictObject({ kind: z.literal('resign'), reason: z.enum(['schedule', 'startup', 'manual']) }),
]);

/** Sent by the reconcile schedule for one source. */
export const reconcileMessageSchema = z.strictObject({ kind: z.literal('reconcile'), sourceId: shortText });

/** An EventBridge "ECR Image Action" event; its detail is read by the ECR source's parser. */
export const ecrEventSchema = z.looseObject({
  source: z.literal('aws.ecr'),
  'detail-type': z.literal('ECR Image Action'),
  account: z.string().regex(/^\d{12}$/),
  region: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/),
  detail: z.looseObject({}),
});

/** Everything the mirror queue carries. */
export const mirrorMessageSchema = z.union([ecrEventSchema, reconcileMessageSchema, mirrorJobSchema]);

/** The first problem of a failed parse, as one line naming the field. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (issue === undefined) return 'invalid';
  const path = issue.path.length === 0 ? '' : `${issue.path.join('.')}: `;
  return `${path}${issue.message}`;
}
