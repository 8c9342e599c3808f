/**
 * Plays the part of the Lambda SQS event source mapping against fauxqs: ReceiveMessage, build a
 * real SQSEvent, invoke the handler, delete what succeeded and leave the reported failures (or
 * the whole batch, if the handler throws) for redelivery.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  type Message,
  ReceiveMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { TEST_REGION } from './fauxqs.ts';

export type SqsLambdaHandler = (
  event: SQSEvent,
  context: Context,
) => Promise<SQSBatchResponse | undefined> | Promise<void>;

export interface PumpResult {
  received: number;
  deleted: number;
  failed: string[];
}

export interface PumpOptions {
  batchSize?: number;
  /** Make failed messages visible again at once instead of after the visibility timeout. */
  redeliverNow?: boolean;
  /** The invocation's context (its remaining time, above all). @default a minute left */
  context?: Context;
  /** Puts the received records in the order a test needs (SQS standard queues keep none). */
  arrange?: (records: SQSRecord[]) => SQSRecord[];
}

export async function pumpOnce(
  sqs: SQSClient,
  queue: { url: string; arn: string },
  handler: SqsLambdaHandler,
  options: PumpOptions = {},
): Promise<PumpResult> {
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queue.url,
      MaxNumberOfMessages: options.batchSize ?? 10,
      WaitTimeSeconds: 0,
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
    }),
  );
  const messages = out.Messages ?? [];
  if (messages.length === 0) return { received: 0, deleted: 0, failed: [] };
  const records = messages.map((m) => toRecord(m, queue.arn));
  const event: SQSEvent = { Records: options.arrange ? options.arrange(records) : records };
  let failedIds: Set<string>;
  try {
    const result = await handler(event, options.context ?? lambdaContext('driver'));
    failedIds = new Set((result?.batchItemFailures ?? []).map((f) => f.itemIdentifier));
  } catch {
    failedIds = new Set(messages.map((m) => m.MessageId!));
  }
  const succeeded = messages.filter((m) => !failedIds.has(m.MessageId!));
  const failed = messages.filter((m) => failedIds.has(m.MessageId!));
  if (succeeded.length > 0) {
    await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queue.url,
        Entries: succeeded.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
      }),
    );
  }
  if (failed.length > 0 && options.redeliverNow) {
    await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: queue.url,
        Entries: failed.map((m, i) => ({
          Id: String(i),
          ReceiptHandle: m.ReceiptHandle!,
          VisibilityTimeout: 0,
        })),
      }),
    );
  }
  return { received: messages.length, deleted: succeeded.length, failed: failed.map((m) => m.MessageId!) };
}

/** Pumps until the queue yields nothing. */
export async function drain(
  sqs: SQSClient,
  queue: { url: string; arn: string },
  handler: SqsLambdaHandler,
  options: PumpOptions & { maxRounds?: number } = {},
): Promise<PumpResult[]> {
  const rounds: PumpResult[] = [];
  for (let i = 0; i < (options.maxRounds ?? 20); i++) {
    const r = await pumpOnce(sqs, queue, handler, options);
    if (r.received === 0) break;
    rounds.push(r);
  }
  return rounds;
}

function toRecord(m: Message, arn: string): SQSRecord {
  const a = m.Attributes ?? {};
  return {
    messageId: m.MessageId!,
    receiptHandle: m.ReceiptHandle!,
    body: m.Body ?? '',
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? '1',
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? 'AIDAEXAMPLE',
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(a.MessageGroupId ? { MessageGroupId: a.MessageGroupId } : {}),
      ...(a.MessageDeduplicationId ? { MessageDeduplicationId: a.MessageDeduplicationId } : {}),
      ...(a.SequenceNumber ? { SequenceNumber: a.SequenceNumber } : {}),
    },
    messageAttributes: {},
    md5OfBody: m.MD5OfBody ?? '',
    eventSource: 'aws:sqs',
    eventSourceARN: arn,
    awsRegion: TEST_REGION,
  };
}

/** A Lambda context; `remainingMs` counts down from now, as the runtime's does. */
export function lambdaContext(functionName: string, remainingMs = 60_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${TEST_REGION}:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: crypto.randomUUID(),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'test',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => {},
    fail: () => {},
    succeed: () => {},
  };
}
