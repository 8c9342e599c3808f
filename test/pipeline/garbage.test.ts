/**
 * Garbage collection of kept upstream content: images are mirrored and published through the
 * real pipeline (a scripted registry stands in for upstream) over the real filesystem store, and
 * a blob leaves storage only once no listed entry has reached it for longer than a manifest
 * lives plus the grace period, whoever else shares it.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { createMirrorApp } from '../../shared/core/app.ts';
import { parseConfig } from '../../shared/core/config.ts';
import { storageKeys } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { metricNames } from '../../shared/core/metrics.ts';
import type { PipelineDeps } from '../../shared/core/pipeline/context.ts';
import { collectGarbage } from '../../shared/core/pipeline/garbage.ts';
import { ociNoteHash } from '../../shared/core/pipeline/oci-view.ts';
import type {
  Clock,
  Metrics,
  ObjectStore,
  PublishRequest,
  PulledModule,
  PullOptions,
  RegistryTarget,
  WasmPuller,
} from '../../shared/core/ports.ts';
import { silentLogger } from '../../shared/core/ports.ts';
import { statePrefixes } from '../../shared/core/storage-keys.ts';

const HOUR = 3600_000;
const hexOf = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const text = (s: string) => new TextEncoder().encode(s);
/** The config many images share (the well-known empty one). */
const EMPTY = text('{}');

interface Image {
  digest: string;
  manifest: Uint8Array;
  config: Uint8Array;
  module: Uint8Array;
}

/** A Wasm artifact: its own manifest and module, and a config that may be shared. */
function image(marker: string, config = EMPTY): Image {
  const module = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, ...text(marker)]);
  const manifest = text(JSON.stringify({ marker, config: hexOf(config), layer: hexOf(module) }));
  return { digest: `sha256:${hexOf(manifest)}`, manifest, config, module };
}
const blobsOf = (i: Image) => [i.manifest, i.config, i.module];

/** Serves the pushed images by tag and digest, with every blob as the content to keep. */
class ImagePuller implements WasmPuller {
  readonly tags = new Map<string, Image>();
  async pullToFile(target: RegistryTarget, dest: string, options: PullOptions = {}): Promise<PulledModule> {
    const found = [...this.tags.values()].find((i) => i.digest === target.reference)!;
    writeFileSync(dest, found.module);
    const pulled: PulledModule = {
      ociDigest: found.digest,
      sha256: hexOf(found.module),
      size: found.module.length,
      format: 'wasm-artifact',
      kind: 'module',
    };
    if (options.keepContent !== undefined) {
      pulled.content = [
        ['application/vnd.oci.image.manifest.v1+json', found.manifest, true] as const,
        ['application/vnd.wasm.config.v0+json', found.config, false] as const,
        ['application/vnd.wasm.content.layer.v1+wasm', found.module, false] as const,
      ].map(([mediaType, body, manifest]) => ({
        digest: `sha256:${hexOf(body)}`,
        mediaType,
        size: body.length,
        manifest,
        body,
      }));
    }
    return pulled;
  }
  async resolveDigest(target: RegistryTarget): Promise<string> {
    const found = this.tags.get(`${target.repository}:${target.reference}`);
    if (found === undefined) throw new WasmMirrorError('MANIFEST_UNKNOWN', 'no such tag');
    return found.digest;
  }
  async listTags(): Promise<string[]> {
    return [];
  }
}

const config = parseConfig(`
mirror: { name: gc-mesh, manifestTtl: 2h, gcGrace: 1h, publishInterval: 0, legacyManifest: false }
sources:
  - { id: ci, type: distribution, registry: r.io, repositories: ["plugins/**"], webhookSecretEnv: S }
`);

describe('garbage collection of kept content', () => {
  let dir: string;
  let store: FsObjectStore;
  let now: Date;
  const clock: Clock = { now: () => now };
  const counted: [string, number | undefined][] = [];
  const metrics: Metrics = { count: (name, _labels, value) => void counted.push([name, value]), gauge() {} };
  const puller = new ImagePuller();
  const sent: PublishRequest[] = [];
  let app: ReturnType<typeof createMirrorApp>;

  const later = (hours: number) => {
    now = new Date(now.getTime() + hours * HOUR);
  };
  /** Pushes an image to a tag upstream a minute after the last push, mirrors it and publishes it. */
  const push = async (repository: string, tag: string, pushed: Image) => {
    now = new Date(now.getTime() + 60_000);
    puller.tags.set(`${repository}:${tag}`, pushed);
    const job = { sourceId: 'ci', registry: 'r.io', repository, tag, receivedAt: now.toISOString() };
    expect(await app.mirror({ ...job, digest: pushed.digest })).toMatchObject({ status: 'mirrored' });
    await app.publish(sent.splice(0));
  };
  const gc = () => collectGarbage(app.deps);
  const exists = async (key: string) => (await store.head(key)) !== undefined;
  const kept = (blobs: Uint8Array[]) => Promise.all(blobs.map((b) => exists(storageKeys.blob(hexOf(b)))));
  const noteHash = (repository: string, i: Image) => ociNoteHash(`r.io/${repository}`, i.digest);
  const noteKey = (repository: string, i: Image) =>
    storageKeys.digestNote('oci', `r.io/${repository}`, i.digest);
  const markers = async (blob: Uint8Array) => {
    const keys: string[] = [];
    for await (const o of store.list(storageKeys.blobRefs(hexOf(blob)))) keys.push(o.key);
    return keys;
  };

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-garbage-'));
    store = await FsObjectStore.open({ root: join(dir, 'data') });
    // The store's own times (reference markers) and the clock start together.
    now = new Date();
    counted.length = 0;
    puller.tags.clear();
    app = createMirrorApp({
      config,
      store,
      signer: await loadOrCreateKey(join(dir, 'private')),
      clock,
      logger: silentLogger,
      metrics,
      puller,
      publishQueue: { send: async (body: PublishRequest) => void sent.push(body) },
      secrets: { get: async () => undefined },
      scratchDir: dir,
    } as unknown as PipelineDeps);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps a blob another listed entry reaches, and deletes what only the unlisted entry reached', async () => {
    // Prepare: two repositories share the empty config; plugins/a's tag then moves on.
    const [a1, a2, b1] = [image('a1'), image('a2', text('{"v":2}')), image('b1')];
    await push('plugins/a', '1.0', a1);
    await push('plugins/b', '1.0', b1);
    await push('plugins/a', '1.0', a2);

    // Act
    const first = await gc();
    later(4);
    const second = await gc();

    // Assess
    expect(first).toMatchObject({ notesNoted: 1, notesDeleted: 0, blobsDeleted: 0 });
    expect(second).toMatchObject({ notesDeleted: 1, blobsDeleted: 2 });
    expect(await kept([a1.manifest, a1.module])).toEqual([false, false]);
    expect(await kept(blobsOf(b1))).toEqual([true, true, true]);
    expect(await kept(blobsOf(a2))).toEqual([true, true, true]);
    expect(await markers(EMPTY)).toEqual(
      [
        storageKeys.blobRef(hexOf(EMPTY), noteHash('plugins/b', b1)),
        storageKeys.blobCreated(hexOf(EMPTY)),
      ].sort(),
    );
    expect([await exists(noteKey('plugins/a', a1)), await exists(noteKey('plugins/b', b1))]).toEqual([
      false,
      true,
    ]);
    expect(await exists(storageKeys.unlistedOciNote(noteHash('plugins/a', a1)))).toBe(false);
  });

  it('keeps an unreachable blob until a manifest lifetime and the grace have passed, then deletes it', async () => {
    // Prepare
    const [a1, a2] = [image('a1'), image('a2', text('{"v":2}'))];
    await push('plugins/a', '1.0', a1);
    await push('plugins/a', '1.0', a2);

    // Act: noted now, 2 h later still within the 3 h, 4 h later past them.
    await gc();
    later(2);
    const early = await gc();
    const beforeGrace = await kept(blobsOf(a1));
    const noteBeforeGrace = await exists(noteKey('plugins/a', a1));
    later(2);
    const late = await gc();

    // Assess
    expect(early).toMatchObject({ notesDeleted: 0, blobsDeleted: 0 });
    expect(beforeGrace).toEqual([true, true, true]);
    expect(noteBeforeGrace).toBe(true);
    expect(late).toMatchObject({ notesDeleted: 1, blobsDeleted: 3 });
    expect(await kept(blobsOf(a1))).toEqual([false, false, false]);
    expect(await kept(blobsOf(a2))).toEqual([true, true, true]);
    expect(await exists(noteKey('plugins/a', a1))).toBe(false);
    for (const blob of blobsOf(a1)) expect(await markers(blob)).toEqual([]);
    expect(await exists(storageKeys.unlistedOciNote(noteHash('plugins/a', a1)))).toBe(false);
    expect(counted).toContainEqual([metricNames.blobsDeleted, 3]);
  });

  it('leaves an entry listed again before the grace untouched, and drops its mark', async () => {
    // Prepare: the tag moves away and, an hour after the pass that noted it, back.
    const [a1, a2] = [image('a1'), image('a2', text('{"v":2}'))];
    await push('plugins/a', '1.0', a1);
    await push('plugins/a', '1.0', a2);
    await gc();
    const marked = await exists(storageKeys.unlistedOciNote(noteHash('plugins/a', a1)));
    later(1);
    await push('plugins/a', '1.0', a1);

    // Act
    await gc();
    const stillMarked = await exists(storageKeys.unlistedOciNote(noteHash('plugins/a', a1)));
    later(4);
    await gc();

    // Assess
    expect(marked).toBe(true);
    expect(stillMarked).toBe(false);
    expect(await kept(blobsOf(a1))).toEqual([true, true, true]);
    expect(await exists(noteKey('plugins/a', a1))).toBe(true);
    for (const blob of blobsOf(a1)) {
      expect(await markers(blob)).toContain(storageKeys.blobRef(hexOf(blob), noteHash('plugins/a', a1)));
    }
  });

  it('never deletes a blob kept before references existed, even once every note reaching it is gone', async () => {
    // Prepare: plugins/b was kept before references existed (its markers removed); plugins/a,
    // kept since, shares its config and leaves the listing first, then plugins/b does too.
    const [a1, a2, b1, b2] = [
      image('a1'),
      image('a2', text('{"v":2}')),
      image('b1'),
      image('b2', text('{"v":2}')),
    ];
    await push('plugins/b', '1.0', b1);
    for await (const o of store.list(statePrefixes.ociRefs)) await store.delete(o.key);
    await push('plugins/a', '1.0', a1);
    await push('plugins/a', '1.0', a2);

    // Act
    await gc();
    later(4);
    await gc();
    const whileBListed = await kept([EMPTY, a1.manifest, a1.module]);
    await push('plugins/b', '1.0', b2);
    await gc();
    later(4);
    const last = await gc();

    // Assess: plugins/b's listed note reaches the config without a marker, so it stays; what
    // plugins/a's intake stored goes. Later plugins/b's own blobs stay too, only its note goes.
    expect(whileBListed).toEqual([true, false, false]);
    expect(last).toMatchObject({ notesDeleted: 1, blobsDeleted: 0 });
    expect(await exists(noteKey('plugins/b', b1))).toBe(false);
    expect(await kept(blobsOf(b1))).toEqual([true, true, true]);
  });

  it('finishes on the next pass a deletion that stopped half way', async () => {
    // Prepare: plugins/a's first image is due; the pass will stop at its first blob deletion.
    const [a1, a2] = [image('a1'), image('a2', text('{"v":2}'))];
    await push('plugins/a', '1.0', a1);
    await push('plugins/a', '1.0', a2);
    await gc();
    later(4);
    let stopped = false;
    const stopping: ObjectStore = {
      head: (key) => store.head(key),
      getBytes: (key, max) => store.getBytes(key, max),
      getStream: (key, range) => store.getStream(key, range),
      put: (key, body, options) => store.put(key, body, options),
      create: (key, body, options) => store.create(key, body, options),
      list: (prefix) => store.list(prefix),
      delete: async (key) => {
        if (!stopped && key.startsWith('blobs/')) {
          stopped = true;
          throw new Error('the function timed out');
        }
        await store.delete(key);
      },
    };

    // Act
    const failure = await collectGarbage({ ...app.deps, store: stopping }).catch((e: Error) => e);
    const noteAfterStop = await exists(noteKey('plugins/a', a1));
    const resumed = await gc();

    // Assess
    expect(failure).toBeInstanceOf(Error);
    expect(noteAfterStop).toBe(false);
    expect(resumed).toMatchObject({ blobsDeleted: 3 });
    expect(await kept(blobsOf(a1))).toEqual([false, false, false]);
    for (const blob of blobsOf(a1)) expect(await markers(blob)).toEqual([]);
    expect(await exists(storageKeys.unlistedOciNote(noteHash('plugins/a', a1)))).toBe(false);
  });

  it('drops a reference whose note never came once it is old, and is kept by a recent one', async () => {
    // Prepare: two unlisted images; each module has a reference from a note that does not exist
    // (an intake that stopped, or one still under way), one written long ago, one just now.
    const [a1, c1, a2] = [image('a1'), image('c1', text('{"c":1}')), image('a2', text('{"v":2}'))];
    await push('plugins/a', '1.0', a1);
    await push('plugins/c', '1.0', c1);
    await push('plugins/a', '1.0', a2);
    await push('plugins/c', '1.0', image('c2', text('{"v":2}')));
    const stray = 'f'.repeat(64);
    for (const m of [a1.module, c1.module]) {
      await store.put(storageKeys.blobRef(hexOf(m), stray), new Uint8Array(), {
        contentType: 'application/octet-stream',
      });
    }

    // Act
    await gc();
    later(4);
    const recent = new Date(now.getTime() - HOUR);
    utimesSync(store.pathOf(storageKeys.blobRef(hexOf(c1.module), stray)), recent, recent);
    await gc();

    // Assess
    expect(await kept([a1.module, c1.module])).toEqual([false, true]);
    expect(await markers(a1.module)).toEqual([]);
    expect(await markers(c1.module)).toEqual(
      [storageKeys.blobRef(hexOf(c1.module), stray), storageKeys.blobCreated(hexOf(c1.module))].sort(),
    );
    expect(await kept([a1.manifest, c1.manifest])).toEqual([false, false]);
  });
});
