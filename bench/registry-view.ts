/**
 * What the registry view (the `/v2/` answers the publisher writes for CloudFront on AWS) costs
 * the publisher (run: `npx tsx bench/registry-view.ts [--runs 5]`). The real publisher and
 * registry-view code run over the filesystem store; every storage request is counted by kind, as
 * S3 would bill it (GET/HEAD; PUT, COPY and LIST; DELETE is free).
 *  1. One new tag published into a repository that already lists 0, 9 and 99 tags: requests of
 *     the view (beside those of the publish itself) and the publish's extra time, median of runs.
 *  2. The scheduled sweep over 200 repositories that are already in place: requests per
 *     repository and time (a process that has not read their notes yet).
 *  3. The monthly S3 request cost of the view at 1,000 pushes a day, at us-east-1 prices
 *     ($0.005 per 1,000 PUT/COPY/LIST, $0.0004 per 1,000 GET), with a sweep every hour.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { FsObjectStore } from '../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../shared/adapters/local/signer.ts';
import { parseConfig } from '../shared/core/config.ts';
import type { ModuleRecord } from '../shared/core/domain.ts';
import { ociNoteOf, writeOciNote } from '../shared/core/pipeline/oci-view.ts';
import { createPublisher } from '../shared/core/pipeline/publish.ts';
import { NoteCache, sweepRegistryView, syncPending } from '../shared/core/pipeline/registry-view.ts';
import type { ObjectStore, RegistryObjectWriter, VerifiedContent } from '../shared/core/ports.ts';
import { noMetrics, silentLogger } from '../shared/core/ports.ts';
import { storageKeys } from '../shared/core/storage-keys.ts';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '5' } } });
const RUNS = Number(values.runs);

type Kind = 'get' | 'put' | 'copy' | 'list' | 'delete';
const sha = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** The store and the view writer, counting each request by the kind S3 bills it as. */
function counted(inner: ObjectStore) {
  const counts: Record<Kind, number> = { get: 0, put: 0, copy: 0, list: 0, delete: 0 };
  const counting =
    <A extends unknown[], R>(kind: Kind, fn: (...args: A) => R) =>
    (...args: A): R => {
      counts[kind]++;
      return fn(...args);
    };
  const store: ObjectStore = {
    head: counting('get', (k) => inner.head(k)),
    getBytes: counting('get', (k, m) => inner.getBytes(k, m)),
    getStream: counting('get', (k, r) => inner.getStream(k, r)),
    put: counting('put', (k, b, o) => inner.put(k, b, o)),
    create: counting('put', (k, b, o) => inner.create(k, b, o)),
    delete: counting('delete', (k) => inner.delete(k)),
    list: counting('list', (p) => inner.list(p)),
  };
  const writer: RegistryObjectWriter = {
    async write(key, source, options) {
      if ('bytes' in source) counts.put++;
      else counts.copy++;
      const bytes =
        'bytes' in source ? source.bytes : (await inner.getBytes(source.copyFrom, 1 << 24))!.bytes;
      await inner.put(key, bytes, { contentType: options.contentType });
    },
  };
  const reset = () => {
    for (const k of Object.keys(counts) as Kind[]) counts[k] = 0;
  };
  return { store, writer, counts, reset };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function setup() {
  const dir = mkdtempSync(join(tmpdir(), 'wm-bench-view-'));
  const inner = await FsObjectStore.open({ root: join(dir, 'data') });
  const signer = await loadOrCreateKey(join(dir, 'private'));
  const config = parseConfig(`
mirror: { name: bench-view, manifestTtl: 48h, legacyManifest: false }
sources:
  - { id: ghcr, type: distribution, registry: ghcr.io, repositories: ["**"], webhookSecretEnv: HOOK }
`);
  let t = Date.parse('2026-01-01T00:00:00Z');
  const c = counted(inner);
  /** What intake leaves for one tag: a kept manifest, config and layer, and the note. */
  const intake = async (repository: string, tag: string): Promise<ModuleRecord> => {
    const layer = Buffer.from(`\0asm ${repository}:${tag}`);
    const cfg = Buffer.from('{}');
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, layers: [sha(layer)], config: sha(cfg), tag }),
    );
    const kept: VerifiedContent[] = [];
    for (const [bytes, mediaType, isManifest] of [
      [manifest, 'application/vnd.oci.image.manifest.v1+json', true],
      [cfg, 'application/vnd.wasm.config.v1+json', false],
      [layer, 'application/vnd.wasm.content.layer.v1+wasm', false],
    ] as const) {
      await inner.put(storageKeys.blob(sha(bytes)), bytes, { contentType: 'application/octet-stream' });
      kept.push({
        digest: `sha256:${sha(bytes)}`,
        mediaType,
        size: bytes.length,
        manifest: isManifest,
      } as VerifiedContent);
    }
    const name = `ghcr.io/${repository}`;
    await writeOciNote(inner, ociNoteOf(name, `sha256:${sha(manifest)}`, kept));
    t += 60_000;
    return {
      name,
      tag,
      ociDigest: `sha256:${sha(manifest)}`,
      sha256: sha(layer),
      size: layer.length,
      format: 'wasm-artifact',
      kind: 'module',
      mirroredAt: new Date(t).toISOString(),
    };
  };
  const clock = { now: () => new Date(t) };
  const publisher = (view: boolean) =>
    createPublisher({
      config,
      store: c.store,
      signer,
      clock,
      logger: silentLogger,
      metrics: noMetrics,
      ...(view ? { registry: c.writer } : {}),
    });
  // One cache for the process, as a warm publish function keeps it across invocations.
  const deps = { store: c.store, registry: c.writer, config, logger: silentLogger, notes: new NoteCache() };
  return { dir, c, intake, publisher, deps };
}

async function oneNewTag(existing: number) {
  const s = await setup();
  const records = [];
  for (let i = 0; i < existing; i++) records.push(await s.intake('acme/plugin', `0.${i}`));
  await s.publisher(true)(records.map((record) => ({ kind: 'record' as const, record })));
  await syncPending(s.deps);
  const requests: Record<Kind, number>[] = [];
  const withView: number[] = [];
  const without: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    // Without the view (the embedded runtime), then with it, each a new tag.
    const plain = await s.intake('acme/plugin', `1.${run}`);
    let start = performance.now();
    await s.publisher(false)([{ kind: 'record', record: plain }]);
    without.push(performance.now() - start);
    await syncPending(s.deps);
    const record = await s.intake('acme/plugin', `2.${run}`);
    start = performance.now();
    await s.publisher(true)([{ kind: 'record', record }]);
    const published = { ...s.c.counts };
    await syncPending(s.deps);
    withView.push(performance.now() - start);
    requests.push(
      Object.fromEntries(
        (Object.keys(published) as Kind[]).map((k) => [k, s.c.counts[k] - published[k]]),
      ) as Record<Kind, number>,
    );
    s.c.reset();
  }
  rmSync(s.dir, { recursive: true, force: true });
  const last = requests.at(-1)!;
  return { existing, last, extraMs: median(withView) - median(without) };
}

async function sweep() {
  const s = await setup();
  const records = [];
  for (let i = 0; i < 200; i++) records.push(await s.intake(`acme/plugin-${i}`, '1.0'));
  await s.publisher(true)(records.map((record) => ({ kind: 'record' as const, record })));
  await syncPending(s.deps);
  s.c.reset();
  const start = performance.now();
  const result = await sweepRegistryView({ ...s.deps, notes: new NoteCache() }, 200);
  const ms = performance.now() - start;
  const counts = { ...s.c.counts };
  rmSync(s.dir, { recursive: true, force: true });
  return { result, ms, counts };
}

const rows = [];
for (const existing of [0, 9, 99]) rows.push(await oneNewTag(existing));
console.log(`one new tag, registry view requests beyond the publish's own (runs: ${RUNS}):`);
console.log('tags before  GET  PUT  COPY  LIST  DELETE  extra publish time');
for (const r of rows) {
  const { get, put, copy, list, delete: del } = r.last;
  console.log(
    `${String(r.existing).padStart(11)}  ${String(get).padStart(3)}  ${String(put).padStart(3)}  ${String(copy).padStart(4)}  ${String(list).padStart(4)}  ${String(del).padStart(6)}  ${r.extraMs.toFixed(1)} ms`,
  );
}
const s = await sweep();
console.log(
  `sweep of 200 repositories in place: ${s.result.written} written, ${s.result.deleted} deleted; ` +
    `${(s.counts.get / 200).toFixed(1)} GET and ${(s.counts.list / 200).toFixed(2)} LIST per repository, ${s.counts.put} PUT; ${s.ms.toFixed(0)} ms`,
);
const perPush = rows[1]!.last;
const monthly =
  (30 * 1000 * ((perPush.put + perPush.copy + perPush.list) * 0.005 + perPush.get * 0.0004)) / 1000 +
  (30 * 24 * (s.counts.get * 0.0004 + (s.counts.put + s.counts.list) * 0.005)) / 1000;
console.log(
  `S3 requests of the view at 1,000 pushes a day and an hourly sweep of 200: $${monthly.toFixed(2)} a month`,
);
