/**
 * QueueProducer on SQS. Standard queues take the body as is; FIFO queues (the publish queue) put
 * every message in one group, so publishes are serialised, and dedupe by the caller's id or, when
 * none is given, by a hash of the body.
 */
import { createHash } from 'node:crypto';
import {
  SendMessageCommand,
  type SendMessageCommandInput,
  SQSClient,
  type SQSClientConfig,
} from '@aws-sdk/client-sqs';
import type { QueueProducer, SendOptions } from '../../shared/core/ports.ts';
import { wrapSdkError } from './aws-errors.ts';

export interface SqsQueueProducerOptions {
  queueUrl: string;
  client?: SQSClient;
  clientConfig?: SQSClientConfig;
  /** Defaults to whether the queue URL ends in `.fifo`. */
  fifo?: boolean;
  /** FIFO message group; one group means one consumer at a time. Default `publish`. */
  messageGroupId?: string;
}

/** SQS bounds: 1..128 characters of alphanumerics and punctuation. */
const DEDUPE_ID_MAX = 128;

export class SqsQueueProducer<T> implements QueueProducer<T> {
  readonly queueUrl: string;
  readonly client: SQSClient;
  private readonly fifo: boolean;
  private readonly messageGroupId: string;

  constructor(options: SqsQueueProducerOptions) {
    this.queueUrl = options.queueUrl;
    this.client = options.client ?? new SQSClient(options.clientConfig ?? {});
    this.fifo = options.fifo ?? options.queueUrl.endsWith('.fifo');
    this.messageGroupId = options.messageGroupId ?? 'publish';
  }

  async send(body: T, options: SendOptions = {}): Promise<void> {
    const text = JSON.stringify(body);
    const input: SendMessageCommandInput = { QueueUrl: this.queueUrl, MessageBody: text };
    if (this.fifo) {
      // FIFO queues accept no per-message delay; ordering is the point of the queue.
      input.MessageGroupId = this.messageGroupId;
      input.MessageDeduplicationId = dedupeId(options.dedupeId, text);
    } else if (options.delaySeconds !== undefined) {
      input.DelaySeconds = Math.min(Math.max(Math.trunc(options.delaySeconds), 0), 900);
    }
    try {
      await this.client.send(new SendMessageCommand(input));
    } catch (err) {
      throw wrapSdkError('QUEUE_FAILURE', `SQS SendMessage to ${this.queueUrl}`, err);
    }
  }
}

function dedupeId(given: string | undefined, body: string): string {
  if (given !== undefined && /^[\w!"#$%&'()*+,\-./:;<=>?@[\\\]^`{|}~]{1,128}$/.test(given)) return given;
  // Ids outside SQS's alphabet or length are hashed, which keeps them stable and unique enough.
  const source = given ?? body;
  return createHash('sha256').update(source).digest('hex').slice(0, DEDUPE_ID_MAX);
}
