/**
 * The local adapters on a real full disk (a small tmpfs): a failed write is a retryable
 * STORAGE_FAILURE that leaves nothing behind and succeeds once space is freed, and the queue never
 * strands a message it could not dead-letter.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DiskQueue } from '../../../shared/adapters/local/disk-queue.ts';
import { FsObjectStore } from '../../../shared/adapters/local/fs-object-store.ts';
import { waitFor } from '../../contract/queue.contract.ts';
import { requireSmallDisk, type SmallDisk } from './fixtures/small-disk.ts';

describe('local adapters on a full disk (a 4 MiB tmpfs)', () => {
  let small: SmallDisk;
  let n = 0;
  let dir: string;

  beforeAll(() => {
    small = requireSmallDisk(4 * 1024 * 1024);
  });
  beforeEach(() => {
    small.free();
    dir = join(small.dir, `case-${n++}`);
  });
  afterAll(() => small?.unmount());

  it('object store: a write that finds no space is a retryable STORAGE_FAILURE, then succeeds', async () => {
    // Prepare
    const store = await FsObjectStore.open({ root: dir });
    small.fill(64 * 1024);
    const module = new Uint8Array(512 * 1024).fill(7);

    // Act
    const failed = await store
      .create('modules/sha256/a.wasm', module, { contentType: 'application/wasm' })
      .catch((err: unknown) => err);
    const leftovers = await readdir(join(dir, 'modules', 'sha256'));
    small.free();
    const info = await store.create('modules/sha256/a.wasm', module, { contentType: 'application/wasm' });

    // Assess
    expect(failed).toMatchObject({ code: 'STORAGE_FAILURE', retryable: true });
    expect(leftovers).toEqual([]);
    expect(info.size).toBe(module.length);
  });

  it('queue: a message that cannot be dead-lettered for lack of space waits in ready/, then is dead-lettered', async () => {
    // Prepare
    const queue = new DiskQueue<{ n: number }>({
      dir,
      maxAttempts: 1,
      pollIntervalMs: 20,
      backoffBaseMs: 50,
      backoffMaxMs: 50,
    });
    await queue.send({ n: 1 });
    small.fill();
    let deliveries = 0;

    // Act
    queue.start(async () => {
      deliveries++;
      throw new Error('handler failed');
    });
    await waitFor(() => deliveries >= 2, 10_000, 'a second delivery while the disk is full');
    const whileFull = await queue.depth();
    small.free();
    await waitFor(async () => (await queue.depth()).dead === 1, 10_000, 'the dead letter');
    await queue.stop();

    // Assess
    expect(whileFull.dead).toBe(0);
    const [dead] = await queue.listDead();
    expect(dead?.body).toEqual({ n: 1 });
    expect(await queue.depth()).toEqual({ ready: 0, inFlight: 0, delayed: 0, dead: 1 });
  });
});
