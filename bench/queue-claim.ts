/**
 * Disk queue claim rate against queue depth (run: `npx tsx bench/queue-claim.ts`): a queue
 * directory is filled with 1,000 and with 50,000 ready messages, then a consumer drains messages
 * one at a time with a handler that does nothing, and the rate is reported in claims/s (each a
 * claim, a read of the message and an ack). The same fill is also drained by the claim the queue
 * used before its index (list and sort ready/ on every claim, then rename the first visible
 * message), for comparison in the same run.
 *
 * Messages are written straight into ready/ in the queue's own layout (what a send leaves), so
 * the fill does not pay 50,000 fsyncs. `BENCH_SIZES=1000,50000 BENCH_CLAIMS=3000`.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nextSeq, parseReady, readyName } from '../shared/adapters/local/disk-queue/layout.ts';
import { DiskQueue } from '../shared/adapters/local/disk-queue.ts';

const SIZES = (process.env.BENCH_SIZES ?? '1000,50000').split(',').map(Number);
const CLAIMS = Number(process.env.BENCH_CLAIMS ?? 3000);
/** The listing claim is slow at depth: fewer claims are enough to time it. */
const LISTING_CLAIMS = Number(process.env.BENCH_LISTING_CLAIMS ?? 200);

async function fill(dir: string, count: number): Promise<void> {
  const ready = join(dir, 'ready');
  await mkdir(ready, { recursive: true });
  const now = Date.now();
  for (let i = 0; i < count; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, count - i) }, (_, j) => {
        const seq = nextSeq(now);
        const body = {
          sourceId: 'bench',
          registry: 'registry.example',
          repository: `plugins/m${i + j}`,
          tag: '1.0',
        };
        const message = { v: 1, id: seq, sentAt: new Date(now).toISOString(), body };
        return writeFile(join(ready, readyName(seq, 0, now)), JSON.stringify(message));
      }),
    );
  }
}

/** Claims/s of the queue's consumer, and how long its first claim (building the index) took. */
async function indexedRate(dir: string, claims: number): Promise<{ perSecond: number; firstMs: number }> {
  const queue = new DiskQueue<unknown>({ dir, pollIntervalMs: 50 });
  await queue.init();
  let delivered = 0;
  let firstAt = 0;
  const started = performance.now();
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  queue.start(async () => {
    delivered++;
    if (delivered === 1) firstAt = performance.now();
    if (delivered === claims) done();
  });
  await finished;
  const ended = performance.now();
  await queue.stop();
  // The first claim lists ready/ once; the rate is over the claims after it.
  return { perSecond: (claims - 1) / ((ended - firstAt) / 1000), firstMs: firstAt - started };
}

/** The claim before the index: list and sort ready/, lease the first visible message, read it, ack it. */
async function listingRate(dir: string, claims: number): Promise<number> {
  const ready = join(dir, 'ready');
  const inflight = join(dir, 'inflight');
  await mkdir(inflight, { recursive: true });
  const started = performance.now();
  for (let n = 0; n < claims; n++) {
    const now = Date.now();
    const names = (await readdir(ready)).sort();
    for (const name of names) {
      const parsed = parseReady(name);
      if (parsed === undefined || parsed.notBefore > now) continue;
      const leased = join(inflight, `${parsed.seq}.1.${now + 60_000}.${process.pid}-bench.msg`);
      await rename(join(ready, name), leased);
      JSON.parse(await readFile(leased, 'utf8'));
      await unlink(leased);
      break;
    }
  }
  return claims / ((performance.now() - started) / 1000);
}

async function main() {
  console.log(`disk queue claims (single consumer, no-op handler), ${CLAIMS} claims per size`);
  console.log('depth     indexed claim    first claim    listing claim (previous)   ratio');
  for (const size of SIZES) {
    const root = await mkdtemp(join(tmpdir(), 'wm-bench-queue-'));
    try {
      const indexedDir = join(root, 'indexed');
      await fill(indexedDir, size);
      const indexed = await indexedRate(indexedDir, Math.min(CLAIMS, size));
      const listingDir = join(root, 'listing');
      await fill(listingDir, size);
      const listing = await listingRate(listingDir, Math.min(LISTING_CLAIMS, size));
      console.log(
        `${String(size).padEnd(9)} ${`${indexed.perSecond.toFixed(0)} claims/s`.padEnd(16)} ${`${indexed.firstMs.toFixed(0)} ms`.padEnd(14)} ${`${listing.toFixed(1)} claims/s`.padEnd(26)} ${(indexed.perSecond / listing).toFixed(0)}x`,
      );
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
}

await main();
