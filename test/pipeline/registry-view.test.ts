/**
 * The registry view the publisher writes for a CDN (`registry/…`): what each listed entry makes
 * servable, how it follows a moved tag, what a publish that stops half way leaves (and how the
 * next run finishes it), and how the sweep fills in names listed before the view existed. The
 * store is the real file store; the writer records the headers it is asked for (on AWS that is
 * S3 metadata, tested end to end in test/aws/registry-view.e2e.test.ts).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { createMirrorApp } from '../../shared/core/app.ts';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';
import type { ModuleRecord } from '../../shared/core/domain.ts';
import type { PipelineDeps } from '../../shared/core/pipeline/context.ts';
import { ociNoteOf, writeOciNote } from '../../shared/core/pipeline/oci-view.ts';
import { createPublisher } from '../../shared/core/pipeline/publish.ts';
import {
  changedNames,
  ociNamesOf,
  sweepRegistryView,
  syncPending,
} from '../../shared/core/pipeline/registry-view.ts';
import type {
  Clock,
  ObjectStore,
  RegistryObjectOptions,
  RegistryObjectWriter,
  Signer,
} from '../../shared/core/ports.ts';
import { noMetrics, silentLogger } from '../../shared/core/ports.ts';
import {
  registryKeys,
  registryMetadata,
  statePrefixes,
  storageKeys,
} from '../../shared/core/storage-keys.ts';

const sha = (bytes: Uint8Array | string) => createHash('sha256').update(bytes).digest('hex');
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const LAYER_TYPE = 'application/vnd.module.wasm.content.layer.v1+wasm';

/** Writes into the same store, remembering the headers each key was given; can be made to fail. */
class RecordingWriter implements RegistryObjectWriter {
  readonly options = new Map<string, RegistryObjectOptions>();
  writes = 0;
  failAt: number | undefined;

  constructor(private readonly store: ObjectStore) {}

  async write(
    key: string,
    source: { bytes: Uint8Array } | { copyFrom: string },
    options: RegistryObjectOptions,
  ) {
    this.writes++;
    if (this.failAt !== undefined && this.writes >= this.failAt) throw new Error('storage went away');
    const bytes =
      'bytes' in source ? source.bytes : (await this.store.getBytes(source.copyFrom, 1 << 20))!.bytes;
    await this.store.put(key, bytes, { contentType: options.contentType });
    this.options.set(key, options);
  }
}

describe('registry view', () => {
  let dir: string;
  let store: ObjectStore;
  let signer: Signer;
  let writer: RecordingWriter;
  let config: MirrorConfig;
  const clock: Clock = { now: () => new Date('2026-01-10T12:00:00Z') };
  const deps = () => ({ store, registry: writer, config, logger: silentLogger });
  const publisher = (withRegistry = true) =>
    createPublisher({
      config,
      store,
      signer,
      clock,
      logger: silentLogger,
      metrics: noMetrics,
      ...(withRegistry ? { registry: writer } : {}),
    });
  const viewKeys = async () => {
    const keys: string[] = [];
    for await (const o of store.list(registryKeys.prefix)) keys.push(o.key);
    return keys.sort();
  };
  const text = async (key: string) =>
    Buffer.from((await store.getBytes(key, 1 << 20))!.bytes).toString('utf8');

  /** Each intake observes its tag a minute after the one before, as a later push would be. */
  let observed = Date.parse('2026-01-10T10:00:00Z');

  /** What intake leaves for a pulled artifact: kept manifest and layer, and the note naming them. */
  async function intake(repository: string, tag: string, marker: string): Promise<ModuleRecord> {
    const layer = Buffer.from(`\0asm module ${marker}`);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MANIFEST_TYPE,
        layers: [{ mediaType: LAYER_TYPE, digest: `sha256:${sha(layer)}`, size: layer.length }],
      }),
    );
    for (const bytes of [manifest, layer]) {
      await store.put(storageKeys.blob(sha(bytes)), bytes, { contentType: 'application/octet-stream' });
    }
    observed += 60_000;
    const name = `r.io/${repository}`;
    const ociDigest = `sha256:${sha(manifest)}`;
    await writeOciNote(
      store,
      ociNoteOf(name, ociDigest, [
        { digest: ociDigest, mediaType: MANIFEST_TYPE, size: manifest.length, manifest: true },
        { digest: `sha256:${sha(layer)}`, mediaType: LAYER_TYPE, size: layer.length, manifest: false },
      ] as never),
    );
    return {
      name,
      tag,
      ociDigest,
      sha256: sha(layer),
      size: layer.length,
      format: 'wasm-artifact',
      kind: 'module',
      mirroredAt: new Date(observed).toISOString(),
    };
  }

  const publish = async (records: ModuleRecord[], withRegistry = true) =>
    publisher(withRegistry)(records.map((record) => ({ kind: 'record' as const, record })));

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-registry-view-'));
    store = await FsObjectStore.open({ root: join(dir, 'data') });
    signer = await loadOrCreateKey(join(dir, 'private'));
    writer = new RecordingWriter(store);
    config = parseConfig(`
mirror: { name: view-mesh, manifestTtl: 48h }
sources:
  - id: local
    type: distribution
    registry: r.io
    repositories: ["plugins/**"]
    webhookSecretEnv: HOOK_TOKEN
`);
  });

  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes each listed tag, what it reaches by digest, the tag list and linked one-tag pages', async () => {
    // Prepare
    const v1 = await intake('plugins/a', '1.0', 'one');
    const v2 = await intake('plugins/a', '2.0', 'two');
    // Act
    await publish([v1, v2]);
    const result = await syncPending(deps());
    // Assess
    const name = 'local/plugins/a';
    const layerOf = (r: ModuleRecord) => `sha256:${r.sha256}`;
    expect(await viewKeys()).toEqual(
      [
        registryKeys.manifest(name, '1.0'),
        registryKeys.manifest(name, '2.0'),
        registryKeys.manifest(name, v1.ociDigest),
        registryKeys.manifest(name, v2.ociDigest),
        registryKeys.blob(name, layerOf(v1)),
        registryKeys.blob(name, layerOf(v2)),
        registryKeys.tagList(name),
        registryKeys.firstTagPage(name),
        registryKeys.tagPageAfter(name, '1.0'),
        registryKeys.tagPageAfter(name, '2.0'),
      ].sort(),
    );
    expect(result).toMatchObject({ names: 1, written: 10, deleted: 0 });
    const tag = writer.options.get(registryKeys.manifest(name, '1.0'))!;
    expect(tag).toEqual({
      contentType: MANIFEST_TYPE,
      cacheControl: 'public, max-age=30',
      metadata: { [registryMetadata.digest]: v1.ociDigest },
    });
    expect(sha(Buffer.from(await text(registryKeys.manifest(name, '1.0'))))).toBe(v1.ociDigest.slice(7));
    expect(writer.options.get(registryKeys.blob(name, layerOf(v1)))!.cacheControl).toContain('immutable');
    expect(JSON.parse(await text(registryKeys.tagList(name)))).toEqual({ name, tags: ['1.0', '2.0'] });
    // first → ["1.0"], links on with last=1.0; after/1.0 → ["2.0"], the end; after/2.0 → [].
    expect(JSON.parse(await text(registryKeys.firstTagPage(name))).tags).toEqual(['1.0']);
    expect(writer.options.get(registryKeys.firstTagPage(name))!.metadata).toEqual({
      [registryMetadata.nextLast]: '1.0',
    });
    expect(JSON.parse(await text(registryKeys.tagPageAfter(name, '1.0'))).tags).toEqual(['2.0']);
    expect(writer.options.get(registryKeys.tagPageAfter(name, '1.0'))!.metadata).toEqual({});
    expect(JSON.parse(await text(registryKeys.tagPageAfter(name, '2.0'))).tags).toEqual([]);
    expect([...(await listed(store, statePrefixes.registryPending))]).toEqual([]);
  });

  it('moves a tag, deletes what no listed entry reaches, and leaves other names alone', async () => {
    // Prepare
    const a = await intake('plugins/a', '1.0', 'old');
    const b = await intake('plugins/b', '1.0', 'other');
    await publish([a, b]);
    await syncPending(deps());
    const moved = await intake('plugins/a', '1.0', 'new');
    writer.options.clear();
    // Act
    await publish([moved]);
    const result = await syncPending(deps());
    // Assess
    const keys = await viewKeys();
    expect(keys).toContain(registryKeys.manifest('local/plugins/a', moved.ociDigest));
    expect(keys).not.toContain(registryKeys.manifest('local/plugins/a', a.ociDigest));
    expect(keys).not.toContain(registryKeys.blob('local/plugins/a', `sha256:${a.sha256}`));
    expect(writer.options.get(registryKeys.manifest('local/plugins/a', '1.0'))!.metadata).toEqual({
      [registryMetadata.digest]: moved.ociDigest,
    });
    // The tag list and pages did not change: only the tag and the new digest objects were written.
    expect([...writer.options.keys()].sort()).toEqual(
      [
        registryKeys.manifest('local/plugins/a', '1.0'),
        registryKeys.manifest('local/plugins/a', moved.ociDigest),
        registryKeys.blob('local/plugins/a', `sha256:${moved.sha256}`),
      ].sort(),
    );
    expect(result).toMatchObject({ names: 1, written: 3, deleted: 2 });
    expect(keys.filter((k) => k.startsWith('registry/local/plugins/b/'))).toHaveLength(6);
  });

  it('finishes a sync that stopped half way on the next run, leaving nothing stale behind', async () => {
    // Prepare: the second write fails, after the index is written.
    const first = await intake('plugins/a', '1.0', 'first');
    writer.failAt = 2;
    await publish([first]);
    expect(await syncPending(deps())).toMatchObject({ failed: 1 });
    expect(await listed(store, statePrefixes.registryPending)).toHaveLength(1);
    // Meanwhile the tag moves on, so part of what the stopped run wrote is no longer wanted.
    const second = await intake('plugins/a', '1.0', 'second');
    writer.failAt = undefined;
    // Act
    await publish([second]);
    await syncPending(deps());
    // Assess
    const name = 'local/plugins/a';
    expect(await viewKeys()).toEqual(
      [
        registryKeys.manifest(name, '1.0'),
        registryKeys.manifest(name, second.ociDigest),
        registryKeys.blob(name, `sha256:${second.sha256}`),
        registryKeys.tagList(name),
        registryKeys.firstTagPage(name),
        registryKeys.tagPageAfter(name, '1.0'),
      ].sort(),
    );
    expect(await listed(store, statePrefixes.registryPending)).toEqual([]);
  });

  it('marks the names before the index is written, so a stop right after the index is caught up', async () => {
    // Prepare: a publish whose process stops before any view write.
    const entry = await intake('plugins/a', '1.0', 'stopped');
    await publish([entry]);
    const marked = await listed(store, statePrefixes.registryPending);
    // Act: the next run publishes nothing new but finds the mark.
    await publish([]);
    const result = await syncPending(deps());
    // Assess
    expect(marked).toHaveLength(1);
    expect(result.names).toBe(1);
    expect(await viewKeys()).toContain(registryKeys.manifest('local/plugins/a', '1.0'));
  });

  it('serves nothing for an entry intake kept no content for, and nothing outside the allow-list', async () => {
    // Prepare
    const kept = await intake('plugins/a', '1.0', 'kept');
    const bare = { ...(await intake('plugins/c', '1.0', 'bare')), ociDigest: `sha256:${'e'.repeat(64)}` };
    // Act
    await publish([kept, bare]);
    await syncPending(deps());
    // Assess
    expect((await viewKeys()).some((k) => k.startsWith('registry/local/plugins/c/'))).toBe(false);
    expect(ociNamesOf(config, 'r.io/plugins/a')).toEqual(['local/plugins/a']);
    expect(ociNamesOf(config, 'r.io/other/a')).toEqual([]);
    expect(ociNamesOf(config, 'q.io/plugins/a')).toEqual([]);
  });

  it('removes what a source served once its allow-list no longer takes the repository', async () => {
    // Prepare
    const entry = await intake('plugins/a', '1.0', 'narrowed');
    await publish([entry]);
    await syncPending(deps());
    config = parseConfig(`
mirror: { name: view-mesh, manifestTtl: 48h }
sources:
  - { id: local, type: distribution, registry: r.io, repositories: ["plugins/b"], webhookSecretEnv: HOOK_TOKEN }
`);
    const before = (await viewKeys()).length;
    // Act
    const swept = await sweepRegistryView(deps());
    // Assess
    expect(before).toBe(6);
    expect(swept).toMatchObject({ names: 0, deleted: 6, failed: 0 });
    expect(await viewKeys()).toEqual([]);
    expect((await listed(store, statePrefixes.registry)).sort()).toEqual([
      `${statePrefixes.registry}sources.json`,
      `${statePrefixes.registry}sweep.json`,
    ]);
  });

  it('removes what a source left once it is no longer in the config, and serves its successor', async () => {
    // Prepare: the same registry, first as source "local", then renamed "plugins-r".
    const entry = await intake('plugins/a', '1.0', 'renamed');
    await publish([entry]);
    await syncPending(deps());
    config = parseConfig(`
mirror: { name: view-mesh, manifestTtl: 48h }
sources:
  - { id: plugins-r, type: distribution, registry: r.io, repositories: ["plugins/**"], webhookSecretEnv: HOOK_TOKEN }
`);
    // Act
    const swept = await sweepRegistryView(deps());
    // Assess
    const keys = await viewKeys();
    expect(keys.filter((k) => k.startsWith('registry/local/'))).toEqual([]);
    expect(keys).toContain(registryKeys.manifest('plugins-r/plugins/a', '1.0'));
    expect(swept).toMatchObject({ names: 1, written: 6, deleted: 6, failed: 0 });
    expect(await listed(store, `${statePrefixes.registry}local/`)).toEqual([]);
    const sources = JSON.parse(await text(`${statePrefixes.registry}sources.json`)) as string[];
    expect(sources).toEqual(['plugins-r']);
  });

  it('refuses a kept manifest whose bytes are not its digest, and still serves every other name', async () => {
    // Prepare
    const entry = await intake('plugins/a', '1.0', 'tampered');
    const other = await intake('plugins/b', '1.0', 'fine');
    await store.put(storageKeys.blob(entry.ociDigest.slice(7)), Buffer.from('{"not":"it"}'), {
      contentType: 'application/json',
    });
    const errors: string[] = [];
    const logger = { ...silentLogger, error: (message: string) => void errors.push(message) };
    await publish([entry, other]);
    // Act
    const result = await syncPending({ ...deps(), logger });
    // Assess
    expect(result).toMatchObject({ names: 1, failed: 1 });
    expect(errors).toEqual(['registry view of a name could not be brought in line; retried later']);
    const keys = await viewKeys();
    expect(keys).not.toContain(registryKeys.manifest('local/plugins/a', '1.0'));
    expect(keys).toContain(registryKeys.manifest('local/plugins/b', '1.0'));
    // The failed name keeps its mark: the next run tries again.
    expect(await listed(store, statePrefixes.registryPending)).toHaveLength(1);
  });

  it('fills in names listed before the view existed, a slice per sweep, and goes round again', async () => {
    // Prepare: published without a view.
    const entries = [];
    for (const r of ['a', 'b', 'c']) entries.push(await intake(`plugins/${r}`, '1.0', r));
    await publish(entries, false);
    expect(await viewKeys()).toEqual([]);
    // Act
    const first = await sweepRegistryView(deps(), 1);
    const rest = [await sweepRegistryView(deps(), 1), await sweepRegistryView(deps(), 1)];
    const again = await sweepRegistryView(deps(), 10);
    // Assess
    expect(first.names).toBeGreaterThanOrEqual(1);
    const served = new Set((await viewKeys()).map((k) => k.split('/')[3]));
    expect(served).toEqual(new Set(['a', 'b', 'c']));
    expect(first.names + rest[0]!.names + rest[1]!.names).toBeGreaterThanOrEqual(3);
    // Everything in place: a full round writes and deletes nothing.
    expect(again).toMatchObject({ written: 0, deleted: 0 });
    expect(again.names).toBe(3);
  });

  it('never fails a publish: a view that cannot be written is counted, and caught up later', async () => {
    // Prepare: storage refuses to list the pending marks, as during an S3 outage of one prefix.
    const counted: { name: string; value: number }[] = [];
    const failing: ObjectStore = {
      ...store,
      head: (k) => store.head(k),
      getBytes: (k, m) => store.getBytes(k, m),
      getStream: (k, r) => store.getStream(k, r),
      put: (k, b, o) => store.put(k, b, o),
      create: (k, b, o) => store.create(k, b, o),
      delete: (k) => store.delete(k),
      list: (prefix) => {
        if (prefix === statePrefixes.registryPending) throw new Error('SlowDown');
        return store.list(prefix);
      },
    };
    const app = createMirrorApp({
      ...({} as PipelineDeps),
      config,
      store: failing,
      signer,
      clock,
      logger: silentLogger,
      metrics: { ...noMetrics, count: (name, _labels, value = 1) => void counted.push({ name, value }) },
      registry: writer,
    });
    const entry = await intake('plugins/a', '1.0', 'outage');
    // Act
    const outcome = await app.publish([{ kind: 'record', record: entry }]);
    const caughtUp = await syncPending(deps());
    // Assess
    expect(outcome).toMatchObject({ published: true, modules: 1 });
    expect(counted).toContainEqual({ name: 'registry_view_failures_total', value: 1 });
    expect(caughtUp.names).toBe(1);
    expect(await viewKeys()).toContain(registryKeys.manifest('local/plugins/a', '1.0'));
  });

  it('deletes only its own keys, whatever a damaged state note names', async () => {
    // Prepare: a note that also names a module and another name's object.
    const entry = await intake('plugins/a', '1.0', 'note');
    await publish([entry]);
    await syncPending(deps());
    const [noteKey] = await listed(store, `${statePrefixes.registry}local/`);
    const note = JSON.parse(await text(noteKey!)) as { objects: Record<string, string> };
    const module = storageKeys.module(entry.sha256);
    await store.put(module, Buffer.from('module'), { contentType: 'application/wasm' });
    const other = registryKeys.tagList('local/plugins/zz');
    await store.put(other, Buffer.from('{}'), { contentType: 'application/json' });
    note.objects[module] = 'x';
    note.objects[other] = 'x';
    await store.put(noteKey!, Buffer.from(JSON.stringify(note)), { contentType: 'application/json' });
    // Act: the tag moves, so the sync deletes what it no longer wants.
    await publish([await intake('plugins/a', '1.0', 'note moved')]);
    await syncPending(deps());
    // Assess
    expect(await store.head(module)).toBeDefined();
    expect(await store.head(other)).toBeDefined();
  });

  it('names the names whose entries changed between two versions of a bin', () => {
    const m = (name: string, tag: string, digest: string) =>
      ({ name, tag, ociDigest: digest }) as unknown as import('../../shared/core/domain.ts').ManifestModule;
    const before = [m('x', '1', 'd1'), m('y', '1', 'd2'), m('z', '1', 'd3')];
    const after = [m('x', '1', 'd1'), m('y', '1', 'd9'), m('w', '1', 'd4')];
    expect(changedNames(before, after)).toEqual(new Set(['y', 'z', 'w']));
    expect(changedNames(before, [...before].reverse())).toEqual(new Set());
  });
});

async function listed(store: ObjectStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of store.list(prefix)) keys.push(o.key);
  return keys;
}
