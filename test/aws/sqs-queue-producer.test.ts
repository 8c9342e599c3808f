import { DeleteMessageCommand, type Message, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SqsQueueProducer } from '../../functions/adapters/sqs-queue-producer.ts';
import { type Emulator, startEmulator } from './support/fauxqs.ts';
import { drain, pumpOnce } from './support/sqs-driver.ts';

describe('SqsQueueProducer and the event source mapping driver on fauxqs', () => {
  let emu: Emulator;

  beforeAll(async () => {
    emu = await startEmulator();
  });
  afterAll(async () => {
    await emu?.stop();
  });

  it('sends JSON bodies to a standard queue', async () => {
    // Prepare
    const q = await emu.createQueue('jobs');
    const producer = new SqsQueueProducer<{ n: number }>({ queueUrl: q.url, client: emu.sqs });
    // Act
    await producer.send({ n: 1 });
    await producer.send({ n: 2 }, { delaySeconds: 0 });
    // Assess
    const bodies: unknown[] = [];
    await drain(emu.sqs, q, async (event: SQSEvent) => {
      for (const r of event.Records) bodies.push(JSON.parse(r.body));
    });
    expect(bodies).toEqual(expect.arrayContaining([{ n: 1 }, { n: 2 }]));
  });

  it('puts every FIFO message in one group and dedupes by id or content', async () => {
    // Prepare
    const q = await emu.createQueue('publish.fifo', { FifoQueue: 'true' });
    const producer = new SqsQueueProducer<{ kind: string; i?: number }>({ queueUrl: q.url, client: emu.sqs });
    // Act
    await producer.send({ kind: 'record', i: 1 }, { dedupeId: 'a' });
    await producer.send({ kind: 'record', i: 2 }, { dedupeId: 'a' }); // same id: dropped
    await producer.send({ kind: 'resign' });
    await producer.send({ kind: 'resign' }); // same content, no id: dropped
    await producer.send({ kind: 'record', i: 3 }, { dedupeId: 'sha256:'.padEnd(200, 'x') }); // too long: hashed
    // Assess: receive one at a time and delete, like the FIFO consumer does; order must hold.
    const msgs: Message[] = [];
    for (;;) {
      const out = await emu.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: q.url,
          MaxNumberOfMessages: 10,
          MessageSystemAttributeNames: ['All'],
        }),
      );
      if (!out.Messages?.length) break;
      for (const m of out.Messages) {
        msgs.push(m);
        await emu.sqs.send(new DeleteMessageCommand({ QueueUrl: q.url, ReceiptHandle: m.ReceiptHandle! }));
      }
    }
    expect(msgs.map((m) => JSON.parse(m.Body!))).toEqual([
      { kind: 'record', i: 1 },
      { kind: 'resign' },
      { kind: 'record', i: 3 },
    ]);
    expect(new Set(msgs.map((m) => m.Attributes?.MessageGroupId))).toEqual(new Set(['publish']));
    for (const m of msgs) expect(m.Attributes?.MessageDeduplicationId?.length).toBeLessThanOrEqual(128);
  });

  it('redelivers reported batch item failures and dead-letters them after maxReceiveCount', async () => {
    // Prepare
    const dlq = await emu.createQueue('mirror-dlq');
    const q = await emu.createQueue('mirror', {
      RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: '3' }),
    });
    const producer = new SqsQueueProducer<{ ok: boolean }>({ queueUrl: q.url, client: emu.sqs });
    await producer.send({ ok: true });
    await producer.send({ ok: false });
    const attempts: string[] = [];
    const handler = async (event: SQSEvent): Promise<SQSBatchResponse> => ({
      batchItemFailures: event.Records.filter((r) => {
        attempts.push(r.attributes.ApproximateReceiveCount);
        return !(JSON.parse(r.body) as { ok: boolean }).ok;
      }).map((r) => ({ itemIdentifier: r.messageId })),
    });
    // Act / Assess
    const first = await pumpOnce(emu.sqs, q, handler, { redeliverNow: true });
    expect(first).toMatchObject({ received: 2, deleted: 1 });
    await drain(emu.sqs, q, handler, { redeliverNow: true });
    expect(attempts.filter((a) => a !== '1')).toEqual(['2', '3']);
    const dead: unknown[] = [];
    await drain(emu.sqs, dlq, async (event: SQSEvent) => {
      for (const r of event.Records) dead.push(JSON.parse(r.body));
    });
    expect(dead).toEqual([{ ok: false }]);
  });

  it('a handler that throws leaves the whole batch for redelivery', async () => {
    // Prepare
    const q = await emu.createQueue('throws');
    const producer = new SqsQueueProducer<number>({ queueUrl: q.url, client: emu.sqs });
    await producer.send(1);
    // Act / Assess
    const r = await pumpOnce(
      emu.sqs,
      q,
      async () => {
        throw new Error('boom');
      },
      { redeliverNow: true },
    );
    expect(r).toMatchObject({ received: 1, deleted: 0 });
    const again = await pumpOnce(emu.sqs, q, async () => {});
    expect(again).toMatchObject({ received: 1, deleted: 1 });
  });

  it('translates SDK failures into QUEUE_FAILURE', async () => {
    // Prepare
    const producer = new SqsQueueProducer<number>({
      queueUrl: `${emu.endpoint}/000000000000/does-not-exist`,
      client: emu.sqs,
    });
    // Act / Assess
    await expect(producer.send(1)).rejects.toMatchObject({ code: 'QUEUE_FAILURE' });
  });
});
