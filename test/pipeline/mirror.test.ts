/**
 * The mirror use case over the real filesystem store, with a scripted puller standing in for
 * the registry (the registry paths run for real in test/embedded and test/oci).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../shared/adapters/local/fs-object-store.ts';
import { loadOrCreateKey } from '../../shared/adapters/local/signer.ts';
import { type MirrorConfig, parseConfig } from '../../shared/core/config.ts';
import { type MirrorJob, storageKeys } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import { createMirror, createMirrorHandler, type MirrorDeps } from '../../shared/core/pipeline/mirror.ts';
import { ociNoteHash, readOciNote } from '../../shared/core/pipeline/oci-view.ts';
import { createPublisher } from '../../shared/core/pipeline/publish.ts';
import type {
  PublishRequest,
  PulledModule,
  PullOptions,
  RegistryTarget,
  WasmPuller,
} from '../../shared/core/ports.ts';
import { noMetrics, silentLogger, systemClock } from '../../shared/core/ports.ts';

const digestOf = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;
const BYTES = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0]);
const HEX = createHash('sha256').update(BYTES).digest('hex');
const PREIMAGES = new Map(['m1', 'm2'].map((s) => [digestOf(s), s]));
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const LAYER = 'application/vnd.module.wasm.content.layer.v1+wasm';

class ScriptedPuller implements WasmPuller {
  pulls: RegistryTarget[] = [];
  tags = new Map<string, string>(['1.0', 'stable', 'latest', 'x'].map((t) => [t, digestOf('m1')]));
  failWith: WasmMirrorError | undefined;
  delayMs = 0;
  /** Runs while a pull is under way (a push landing in the registry meanwhile). */
  duringPull: (() => void) | undefined;
  async pullToFile(target: RegistryTarget, dest: string, options: PullOptions = {}): Promise<PulledModule> {
    this.pulls.push(target);
    this.duringPull?.();
    await new Promise((r) => setTimeout(r, this.delayMs));
    if (this.failWith !== undefined) throw this.failWith;
    writeFileSync(dest, BYTES);
    const pulled: PulledModule = {
      ociDigest: target.reference,
      sha256: HEX,
      size: BYTES.length,
      format: 'wasm-artifact',
      kind: 'module',
    };
    if (options.keepContent !== undefined) {
      // The "manifest" is the text its digest was made from; the one layer is the module.
      const manifest = new TextEncoder().encode(PREIMAGES.get(target.reference)!);
      const layer = options.keepContent.stagePath(`sha256:${HEX}`);
      writeFileSync(layer, BYTES);
      pulled.content = [
        {
          digest: target.reference,
          mediaType: MANIFEST,
          size: manifest.length,
          manifest: true,
          body: manifest,
        },
        {
          digest: `sha256:${HEX}`,
          mediaType: LAYER,
          size: BYTES.length,
          manifest: false,
          body: { path: layer, size: BYTES.length },
        },
      ];
    }
    return pulled;
  }
  async resolveDigest(target: RegistryTarget): Promise<string> {
    const d = this.tags.get(target.reference);
    if (d === undefined) throw new WasmMirrorError('MANIFEST_UNKNOWN', 'no such tag');
    return d;
  }
  async listTags(): Promise<string[]> {
    return [...this.tags.keys()];
  }
}

describe('mirror use case', () => {
  let dir: string;
  let puller: ScriptedPuller;
  let sent: PublishRequest[];
  let deps: MirrorDeps;
  let config: MirrorConfig;

  const job = (over: Partial<MirrorJob> = {}): MirrorJob => ({
    sourceId: 'reg',
    registry: 'registry.example:5000',
    repository: 'plugins/auth',
    tag: '1.0',
    digest: digestOf('m1'),
    receivedAt: new Date().toISOString(),
    ...over,
  });

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-mirror-'));
    puller = new ScriptedPuller();
    sent = [];
    config = parseConfig(`
mirror: { name: unit }
sources:
  - { id: reg, type: distribution, registry: registry.example:5000, repositories: ["plugins/**"], webhookSecretEnv: S }
`);
    deps = {
      config,
      store: await FsObjectStore.open({ root: join(dir, 'data') }),
      publishQueue: { send: async (body) => void sent.push(body) },
      puller,
      secrets: { get: async () => undefined },
      clock: systemClock,
      logger: silentLogger,
      metrics: noMetrics,
      scratchDir: dir,
    };
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('stores the module under its sha256 and hands a record to the publisher', async () => {
    const outcome = await createMirror(deps)(job());
    expect(outcome).toMatchObject({ status: 'mirrored', pulled: true });
    expect((await deps.store.head(storageKeys.module(HEX)))?.size).toBe(BYTES.length);
    expect(sent).toEqual([
      {
        kind: 'record',
        record: expect.objectContaining({
          name: 'registry.example:5000/plugins/auth',
          tag: '1.0',
          ociDigest: digestOf('m1'),
          sha256: HEX,
        }),
      },
    ]);
  });

  it('keeps the manifest and blobs the pull verified under their digests, and a note of what the digest reaches', async () => {
    await createMirror(deps)(job());
    const manifest = await deps.store.getBytes(storageKeys.blob(digestOf('m1').slice(7)), 1024);
    expect(Buffer.from(manifest!.bytes).toString()).toBe('m1');
    const layer = await deps.store.getBytes(storageKeys.blob(HEX), 1024);
    expect(layer?.bytes).toEqual(BYTES);
    const note = await readOciNote(deps.store, 'registry.example:5000/plugins/auth', digestOf('m1'));
    expect(note?.content).toEqual([
      { digest: digestOf('m1'), mediaType: MANIFEST, size: 2, manifest: true },
      { digest: `sha256:${HEX}`, mediaType: LAYER, size: BYTES.length, manifest: false },
    ]);
    // Staged files are the mirror's to remove once stored.
    expect(readdirSync(dir).filter((f) => f.startsWith('pull-'))).toEqual([]);
  });

  it('marks every kept blob with a reference to its note, and as stored with references only when it stored it', async () => {
    // Prepare: the layer was kept before references existed; a second digest shares it.
    await deps.store.put(storageKeys.blob(HEX), BYTES, { contentType: LAYER });
    puller.tags.set('2.0', digestOf('m2'));
    const name = 'registry.example:5000/plugins/auth';
    const [m1, m2] = [ociNoteHash(name, digestOf('m1')), ociNoteHash(name, digestOf('m2'))];
    const manifestHex = digestOf('m1').slice(7);
    const markers = async (hex: string) => {
      const keys: string[] = [];
      for await (const o of deps.store.list(storageKeys.blobRefs(hex))) keys.push(o.key);
      return keys;
    };

    // Act
    const mirror = createMirror(deps);
    await mirror(job());
    await mirror(job({ tag: '2.0', digest: digestOf('m2') }));

    // Assess
    expect(storageKeys.digestNote('oci', name, digestOf('m1'))).toBe(`state/oci/${m1}.json`);
    expect(await markers(manifestHex)).toEqual(
      [storageKeys.blobRef(manifestHex, m1), storageKeys.blobCreated(manifestHex)].sort(),
    );
    expect(await markers(HEX)).toEqual([storageKeys.blobRef(HEX, m1), storageKeys.blobRef(HEX, m2)].sort());
  });

  it('pulls a listed digest again when its upstream content was not kept (listed by an earlier version)', async () => {
    const mirror = createMirror(deps);
    await mirror(job());
    const publish = createPublisher({ ...deps, signer: await loadOrCreateKey(join(dir, 'key')) });
    await publish(sent);
    await deps.store.delete(
      storageKeys.digestNote('oci', 'registry.example:5000/plugins/auth', digestOf('m1')),
    );
    expect(await mirror(job())).toMatchObject({ status: 'mirrored', pulled: true });
    expect(puller.pulls).toHaveLength(2);
    expect(await mirror(job())).toMatchObject({ status: 'already-listed' });
  });

  it('skips a reference already listed, and lists another tag of the same digest without pulling', async () => {
    const mirror = createMirror(deps);
    await mirror(job());
    const publish = createPublisher({ ...deps, signer: await loadOrCreateKey(join(dir, 'key')) });
    await publish(sent);
    expect(await mirror(job())).toMatchObject({ status: 'already-listed' });
    expect(await mirror(job({ tag: 'stable' }))).toMatchObject({ status: 'mirrored', pulled: false });
    expect(puller.pulls).toHaveLength(1);
  });

  it('never lists a late or replayed delivery for a tag that has since moved', async () => {
    puller.tags.set('1.0', digestOf('m2'));
    const outcome = await createMirror(deps)(job());
    expect(outcome).toMatchObject({ status: 'stale', ociDigest: digestOf('m1'), current: digestOf('m2') });
    expect(puller.pulls).toHaveLength(0);
    expect(sent).toHaveLength(0);
    // A digest-only delivery of the old digest is still mirrored, listed under no tag.
    const { tag: _omit, ...digestOnly } = job();
    expect(await createMirror(deps)(digestOnly)).toMatchObject({ status: 'mirrored', record: { tag: '' } });
  });

  it('retries a push event that arrives before its tag is written, instead of dropping it', async () => {
    // Prepare: the registry notified the push (tag and digest) before writing the tag.
    puller.tags.delete('1.0');
    const permanent: string[] = [];
    const handle = createMirrorHandler({
      ...deps,
      onPermanentFailure: (_job, e) => void permanent.push(e.code),
    });

    // Act
    const early = await handle(job()).catch((e: WasmMirrorError) => e);
    puller.tags.set('1.0', digestOf('m1'));
    await handle(job());

    // Assess
    expect(early).toMatchObject({ code: 'MANIFEST_UNKNOWN', retryable: true });
    expect(permanent).toEqual([]);
    expect(sent).toHaveLength(1);
  });

  it('drops its record when the tag moved while it was pulling', async () => {
    puller.duringPull = () => puller.tags.set('1.0', digestOf('m2'));
    const outcome = await createMirror(deps)(job());
    expect(outcome).toMatchObject({ status: 'stale', ociDigest: digestOf('m1'), current: digestOf('m2') });
    expect(puller.pulls).toHaveLength(1);
    expect(sent).toHaveLength(0);
    // The bytes are stored and indexed all the same: a later rollback to m1 needs no pull.
    expect(await deps.store.head(storageKeys.module(HEX))).toBeDefined();
  });

  it('resolves a tag-only job (Docker Hub, Quay) and pulls by digest', async () => {
    const { digest: _omit, ...tagOnly } = job();
    await createMirror(deps)(tagOnly);
    expect(puller.pulls[0]!.reference).toBe(digestOf('m1'));
  });

  it('pulls once for concurrent jobs of the same digest', async () => {
    puller.delayMs = 50;
    const mirror = createMirror(deps);
    const outcomes = await Promise.all([
      mirror(job()),
      mirror(job({ tag: 'latest' })),
      mirror(job({ tag: 'x' })),
    ]);
    expect(puller.pulls).toHaveLength(1);
    expect(outcomes.map((o) => o.status)).toEqual(['mirrored', 'mirrored', 'mirrored']);
    expect(sent).toHaveLength(3);
  });

  it.each([
    ['an unknown source', { sourceId: 'nope' }],
    ['another registry', { registry: 'evil.example' }],
    ['a repository outside the allow-list', { repository: 'secret/x' }],
  ])('refuses %s for good, without pulling', async (_what, over) => {
    const outcome = await createMirror(deps)(job(over));
    expect(outcome).toMatchObject({
      status: 'rejected',
      error: { code: 'REGISTRY_NOT_ALLOWED', retryable: false },
    });
    expect(puller.pulls).toHaveLength(0);
  });

  it('remembers what the bytes are not, until the size cap changes', async () => {
    puller.failWith = new WasmMirrorError('NOT_WASM', 'no \\0asm magic');
    const failures: string[] = [];
    const handler = createMirrorHandler({
      ...deps,
      onPermanentFailure: (_j, e) => void failures.push(e.code),
    });
    await handler(job());
    await handler(job());
    expect(failures).toEqual(['NOT_WASM', 'NOT_WASM']);
    expect(puller.pulls).toHaveLength(1);
    const raised = parseConfig(`
mirror: { name: unit, maxModuleSize: 512MiB }
sources:
  - { id: reg, type: distribution, registry: registry.example:5000, repositories: ["plugins/**"], webhookSecretEnv: S }
`);
    await createMirrorHandler({ ...deps, config: raised })(job());
    expect(puller.pulls).toHaveLength(2);
  });

  it('throws retryable failures so the queue retries them, and records nothing for them', async () => {
    puller.failWith = new WasmMirrorError('REGISTRY_UNAVAILABLE', 'connection refused', { retryable: true });
    const failures: string[] = [];
    const handler = createMirrorHandler({
      ...deps,
      onPermanentFailure: (_j, e) => void failures.push(e.code),
    });
    await expect(handler(job())).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
    await expect(handler(job())).rejects.toMatchObject({ code: 'REGISTRY_UNAVAILABLE' });
    expect(puller.pulls).toHaveLength(2);
    expect(failures).toEqual([]);
  });

  it('retries an unclassified error rather than dropping the job', async () => {
    const handler = createMirrorHandler({
      ...deps,
      store: Object.assign(Object.create(deps.store), {
        getBytes: async () => {
          throw new TypeError('socket hang up');
        },
      }),
    });
    await expect(handler(job())).rejects.toMatchObject({ code: 'INTERNAL', retryable: true });
  });

  it('fails closed when the credentials the config names are not set', async () => {
    const withCreds = parseConfig(`
sources:
  - id: reg
    type: distribution
    registry: registry.example:5000
    repositories: ["plugins/**"]
    webhookSecretEnv: S
    credentials: { usernameEnv: U, passwordEnv: P }
`);
    const outcome = await createMirror({ ...deps, config: withCreds })(job());
    expect(outcome).toMatchObject({ status: 'rejected', error: { code: 'CONFIG_INVALID' } });
    const passed: RegistryTarget[] = puller.pulls;
    await createMirror({ ...deps, config: withCreds, secrets: { get: async (n) => `${n}-value` } })(job());
    expect(passed[0]!.credentials).toEqual({ username: 'U-value', password: 'P-value' });
  });
});
