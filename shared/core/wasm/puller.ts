/**
 * Resolves a reference to one Wasm module, whatever the packaging, and streams it into a file.
 * The module is the one Istio's own fetcher would load from the same reference: an index
 * resolves to its linux/amd64 (or platform-less) entry, and an image's layers are tried in
 * Istio's order (formats.ts). Per layer: blob → size and digest check → (gzip members → tar
 * entry) → magic, size cap, sha256 and section walk → temp file → engine validation (never
 * instantiated) → rename. Nothing holds the whole module in memory while it downloads, and a
 * failed pull leaves no file behind.
 *
 * Asked to keep what it verified (PullOptions.keepContent), it hands back the manifests it read
 * and stages every blob of the image: the layers it reads anyway are written aside while they
 * stream (a raw module layer is the module file itself), and only the config and any layer it
 * had no reason to read are fetched, each checked against its digest.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, type FileHandle, link, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { SHA256_DIGEST } from '../domain.ts';
import { isFilesystemError, storageFailure, toWasmMirrorError, WasmMirrorError } from '../errors.ts';
import { writeAll } from '../io.ts';
import {
  type FetchedManifest,
  RegistryClient,
  type RegistryClientOptions,
  type RepositoryTarget,
} from '../oci/client.ts';
import { type Descriptor, isImageManifestMediaType, isIndexMediaType } from '../oci/media-types.ts';
import { assertTagOrDigest, isValidRegistryHost } from '../oci/reference.ts';
import type { PulledModule, PullOptions, RegistryTarget, VerifiedContent, WasmPuller } from '../ports.ts';
import {
  asDescriptor,
  COMPAT_ENTRY,
  istioIndexEntry,
  layerCandidates,
  NotCompatLayer,
  type WasmLayer,
} from './formats.ts';
import { GzipMemberReader } from './gzip.ts';
import { WasmInspector } from './inspect.ts';
import { TarEntryReader } from './tar.ts';
import { validateCoreModuleFile } from './validate.ts';

const MiB = 1024 * 1024;
/** Indexes inside indexes followed at most (go-containerregistry follows them too). */
const MAX_INDEX_DEPTH = 4;

export interface OciWasmPullerOptions extends RegistryClientOptions {
  /** A client to share (and its token cache); built from the other options when absent. */
  client?: RegistryClient;
  /** Default module size cap (256 MiB, like Istio); PullOptions.maxModuleBytes overrides it per pull. */
  maxModuleBytes?: number;
  /** Cap on a compat image's compressed layer (default twice the module cap). */
  maxLayerBytes?: number;
  /** Cap on a compat layer's decompressed tar stream up to plugin.wasm (default twice the module cap plus 1 MiB). */
  maxUncompressedBytes?: number;
}

export interface ResolvedWasm {
  /** Digest of the manifest (or index) the reference points to. */
  ociDigest: string;
  /** Digest of the image manifest holding the layers (differs from ociDigest for an index). */
  imageDigest: string;
  /**
   * Layers to read, in Istio's order; a later one only when a compat layer holds no readable
   * plugin.wasm (never more than two, and only the first can be a compat layer).
   */
  candidates: WasmLayer[];
  /** The manifests read on the way, in order: the reference's, then each index's chosen child. */
  manifests: FetchedManifest[];
  /** The image's config and layers, as its manifest lists them. */
  config: Descriptor;
  layers: Descriptor[];
}

export class OciWasmPuller implements WasmPuller {
  readonly client: RegistryClient;
  readonly #maxModuleBytes: number;
  readonly #maxLayerBytes: number | undefined;
  readonly #maxUncompressedBytes: number | undefined;

  constructor(options: OciWasmPullerOptions = {}) {
    this.client = options.client ?? new RegistryClient(options);
    this.#maxModuleBytes = options.maxModuleBytes ?? 256 * MiB;
    this.#maxLayerBytes = options.maxLayerBytes;
    this.#maxUncompressedBytes = options.maxUncompressedBytes;
  }

  async pullToFile(
    target: RegistryTarget,
    destPath: string,
    options: PullOptions = {},
  ): Promise<PulledModule> {
    const repo = repositoryOf(target);
    assertTagOrDigest(target.reference);
    const resolved = await this.resolve(
      target,
      options.signal === undefined ? {} : { signal: options.signal },
    );
    const keeper =
      options.keepContent === undefined ? undefined : new ContentKeeper(options.keepContent.stagePath);
    const pulled = await this.#pullCandidates(repo, resolved, destPath, options, keeper).catch(
      async (err: unknown) => {
        await keeper?.discard();
        throw err;
      },
    );
    if (keeper === undefined) return pulled;
    try {
      pulled.content = await this.#keepImage(repo, resolved, keeper, options);
      return pulled;
    } catch (err) {
      // All or nothing: the module is not handed over without the content asked for.
      await keeper.discard();
      await rm(destPath, { force: true }).catch(() => {});
      throw isFilesystemError(err) ? storageFailure(`staging content for ${destPath}`, err) : err;
    }
  }

  async #pullCandidates(
    repo: RepositoryTarget,
    resolved: ResolvedWasm,
    destPath: string,
    options: PullOptions,
    keeper: ContentKeeper | undefined,
  ): Promise<PulledModule> {
    const misses: string[] = [];
    for (const candidate of resolved.candidates) {
      try {
        return await this.#pullLayer(repo, resolved.ociDigest, candidate, destPath, options, keeper);
      } catch (err) {
        // Istio moves on to the next packaging when a compat layer is unreadable; so does the mirror.
        if (!(err instanceof NotCompatLayer)) throw err;
        misses.push(err.message);
      }
    }
    throw new WasmMirrorError(
      'UNSUPPORTED_FORMAT',
      `no Wasm module in image ${resolved.imageDigest}: ${misses.join('; ')}`,
    );
  }

  /**
   * Everything a registry client needs to pull the image again, each digest once: the manifests
   * read on the way, the config, every layer. Layers read for the module are staged already;
   * the rest are fetched now, capped together at the layer cap (a Wasm image is a module and
   * a small config, so anything larger is not what the mirror keeps).
   */
  async #keepImage(
    repo: RepositoryTarget,
    resolved: ResolvedWasm,
    keeper: ContentKeeper,
    options: PullOptions,
  ): Promise<VerifiedContent[]> {
    const content: VerifiedContent[] = [];
    const seen = new Set<string>();
    for (const m of resolved.manifests) {
      if (seen.has(m.digest)) continue;
      seen.add(m.digest);
      content.push({
        digest: m.digest,
        mediaType: m.mediaType,
        size: m.bytes.length,
        manifest: true,
        body: m.bytes,
      });
    }
    const blobs = [resolved.config, ...resolved.layers].filter((d) => {
      if (seen.has(d.digest)) return false;
      seen.add(d.digest);
      return true;
    });
    const maxModule = options.maxModuleBytes ?? this.#maxModuleBytes;
    const cap = this.#maxLayerBytes ?? 2 * maxModule;
    const missing = blobs.filter((d) => keeper.staged(d.digest) === undefined);
    const extra = missing.reduce((sum, d) => sum + d.size, 0);
    if (extra > cap) {
      throw new WasmMirrorError(
        'SIZE_EXCEEDED',
        `image ${resolved.imageDigest} holds ${extra} bytes besides the module's layer, over the ${cap}-byte cap`,
      );
    }
    for (const d of missing) {
      await keeper.fetch(d.digest, this.client.blob(repo, d, blobOptions(options, cap)));
    }
    for (const d of blobs) {
      const path = keeper.staged(d.digest)!;
      content.push({
        digest: d.digest,
        mediaType: contentMediaType(d.mediaType),
        size: d.size,
        manifest: false,
        body: { path, size: d.size },
      });
    }
    return content;
  }

  async resolveDigest(target: RegistryTarget, options: { signal?: AbortSignal } = {}): Promise<string> {
    return this.client.resolveDigest(repositoryOf(target), target.reference, options);
  }

  async listTags(
    target: Omit<RegistryTarget, 'reference'>,
    options: { signal?: AbortSignal } = {},
  ): Promise<string[]> {
    return this.client.listTags(repositoryOf(target), options);
  }

  /** Which manifest and layers hold the module, without downloading any layer. */
  async resolve(target: RegistryTarget, options: { signal?: AbortSignal } = {}): Promise<ResolvedWasm> {
    const repo = repositoryOf(target);
    const top = await this.client.getManifest(repo, target.reference, options);
    const manifests = [top];
    let manifest = top;
    for (let depth = 0; isIndexMediaType(manifest.mediaType); depth++) {
      if (depth === MAX_INDEX_DEPTH) {
        throw new WasmMirrorError('UNSUPPORTED_FORMAT', `indexes nested more than ${MAX_INDEX_DEPTH} deep`);
      }
      if (!Array.isArray(manifest.json.manifests)) {
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `index ${manifest.digest} has no manifests array`);
      }
      const entries = manifest.json.manifests.map((m, i) => asDescriptor(m, `index entry ${i}`));
      const entry = istioIndexEntry(entries);
      if (entry === undefined) {
        throw new WasmMirrorError(
          'UNSUPPORTED_FORMAT',
          `index ${manifest.digest} has no linux/amd64 entry and no entry without a platform: ` +
            'Istio would load nothing from it',
        );
      }
      manifest = await this.#child(repo, entry, options);
      manifests.push(manifest);
    }
    if (!isImageManifestMediaType(manifest.mediaType)) {
      throw new WasmMirrorError(
        'UNSUPPORTED_MEDIA_TYPE',
        `unsupported manifest media type ${manifest.mediaType}`,
      );
    }
    const candidates = layerCandidates(manifest.json);
    // layerCandidates has checked both shapes.
    const layers = (manifest.json.layers as unknown[]).map((l, i) => asDescriptor(l, `layer ${i}`));
    return {
      candidates,
      ociDigest: top.digest,
      imageDigest: manifest.digest,
      manifests,
      config: asDescriptor(manifest.json.config, 'manifest config'),
      layers,
    };
  }

  async #child(repo: RepositoryTarget, entry: Descriptor, options: { signal?: AbortSignal }) {
    const child = await this.client.getManifest(repo, entry.digest, options);
    if (child.bytes.length !== entry.size) {
      throw new WasmMirrorError(
        'LENGTH_MISMATCH',
        `index entry ${entry.digest} is ${child.bytes.length} bytes, not ${entry.size}`,
      );
    }
    return child;
  }

  /** Streams one candidate layer's module into destPath; NotCompatLayer when Istio would move on. */
  async #pullLayer(
    repo: RepositoryTarget,
    ociDigest: string,
    candidate: WasmLayer,
    destPath: string,
    options: PullOptions,
    keeper: ContentKeeper | undefined,
  ): Promise<PulledModule> {
    const maxModule = options.maxModuleBytes ?? this.#maxModuleBytes;
    const temp = join(dirname(destPath), `.${basename(destPath)}.${randomBytes(6).toString('hex')}.tmp`);
    let fh: FileHandle | undefined;
    try {
      fh = await open(temp, 'wx', 0o644);
    } catch (err) {
      throw storageFailure(`cannot create ${temp}`, err);
    }
    try {
      const raw = candidate.archive === 'none';
      const inspector = new WasmInspector();
      // A raw layer's digest is the module's sha256 and the blob stream already verifies it.
      const hash = raw ? undefined : createHash('sha256');
      const writer = new BatchedWriter(fh);
      // Inside a compat layer a bad module is reported once the entry is read whole: Istio
      // moves on from a layer whose plugin.wasm is cut short, whatever its first bytes are.
      let notWasm: unknown;
      let size = 0;
      const sink = async (chunk: Uint8Array) => {
        size += chunk.length;
        if (size > maxModule) {
          throw new WasmMirrorError('SIZE_EXCEEDED', `module is over the ${maxModule}-byte cap`);
        }
        if (notWasm === undefined) {
          try {
            inspector.push(chunk);
          } catch (err) {
            if (raw) throw err;
            notWasm = err;
          }
        }
        hash?.update(chunk);
        await writer.write(chunk).catch((err: unknown) => {
          throw storageFailure(`cannot write ${temp}`, err);
        });
      };
      const blobCap = raw ? maxModule : (this.#maxLayerBytes ?? 2 * maxModule);
      const fetched = this.client.blob(repo, candidate.layer, {
        ...blobOptions(options, blobCap),
        ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      });
      // A compat layer is kept as it streams; a raw layer is the module file, linked once checked.
      const blob =
        keeper === undefined || raw || keeper.staged(candidate.layer.digest) !== undefined
          ? fetched
          : keeper.tee(candidate.layer.digest, fetched);
      if (raw) {
        for await (const chunk of blob) await sink(chunk);
      } else {
        await readCompatLayer(blob, sink, {
          maxEntryBytes: maxModule,
          // Room for the module twice over plus tar headers and small neighbours.
          maxArchiveBytes: this.#maxUncompressedBytes ?? 2 * maxModule + MiB,
        });
        if (notWasm !== undefined) throw notWasm;
      }
      const kind = inspector.end();
      try {
        await writer.flush();
        // No fsync: rename makes the file appear whole or not at all, and this is a staging copy
        // whose durable home is the object store.
        await fh.close();
      } catch (err) {
        throw storageFailure(`cannot write ${temp}`, err);
      }
      fh = undefined;
      if (kind === 'module') await validateCoreModuleFile(temp, inspector.sections);
      await rename(temp, destPath).catch((err: unknown) => {
        throw storageFailure(`cannot move the module to ${destPath}`, err);
      });
      if (raw && keeper !== undefined) await keeper.adopt(candidate.layer.digest, destPath);
      const pulled: PulledModule = {
        ociDigest,
        sha256: hash === undefined ? candidate.layer.digest.slice('sha256:'.length) : hash.digest('hex'),
        size,
        format: candidate.format,
        kind,
      };
      const abi = kind === 'module' ? inspector.proxyAbi : undefined;
      if (abi !== undefined) pulled.abi = abi;
      return pulled;
    } catch (err) {
      await fh?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      if (err instanceof NotCompatLayer) throw err;
      // A full or failing disk (reading the staged file back, say) is retried, never rejected.
      throw isFilesystemError(err) ? storageFailure(`staging ${temp}`, err) : toWasmMirrorError(err);
    }
  }
}

/**
 * Hands a compat layer's plugin.wasm to `sink`, reading as Istio does (Go's gzip and tar rules).
 * Once the entry is read whole nothing more is decompressed, but every remaining byte of the
 * blob is still read so its digest is checked; after a NotCompatLayer too, so a corrupted
 * download never passes for a layer Istio would skip.
 */
async function readCompatLayer(
  blob: AsyncIterable<Uint8Array>,
  sink: (chunk: Uint8Array) => Promise<void>,
  limits: { maxEntryBytes: number; maxArchiveBytes: number },
): Promise<void> {
  const tar = new TarEntryReader({ baseName: COMPAT_ENTRY, sink, ...limits });
  const gzip = new GzipMemberReader(
    (chunk) => tar.push(chunk),
    () => tar.done,
  );
  let miss: NotCompatLayer | undefined;
  const attempt = async (step: () => Promise<void> | void) => {
    try {
      await step();
    } catch (err) {
      if (!(err instanceof NotCompatLayer)) throw err;
      miss = err;
    }
  };
  try {
    for await (const chunk of blob) {
      if (!tar.done && miss === undefined) await attempt(() => gzip.push(chunk));
    }
    if (!tar.done && miss === undefined) {
      await attempt(async () => {
        await gzip.end();
        tar.end();
      });
    }
  } finally {
    gzip.destroy();
  }
  if (miss !== undefined) throw miss;
}

function blobOptions(options: PullOptions, maxBytes: number): { signal?: AbortSignal; maxBytes: number } {
  return options.signal === undefined ? { maxBytes } : { signal: options.signal, maxBytes };
}

/** RFC 6838 type/subtype: a descriptor's media type becomes a Content-Type header, so nothing else passes. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

function contentMediaType(mediaType: string): string {
  return MEDIA_TYPE.test(mediaType) ? mediaType : 'application/octet-stream';
}

/**
 * The blobs a pull keeps, staged at the caller's paths. A file is left in place only once its
 * blob has been read whole and its digest checked; anything cut short is removed at once, and
 * `discard` removes the rest when the pull fails.
 */
class ContentKeeper {
  readonly #stagePath: (digest: string) => string;
  readonly #staged = new Map<string, string>();
  readonly #partial = new Set<string>();

  constructor(stagePath: (digest: string) => string) {
    // A digest names a staged file: only the sha256 grammar reaches the caller's path builder.
    this.#stagePath = (digest) => {
      if (!SHA256_DIGEST.test(digest)) {
        throw new WasmMirrorError(
          'REGISTRY_PROTOCOL',
          `digest ${JSON.stringify(digest)} is not a sha256 digest`,
        );
      }
      return stagePath(digest);
    };
  }

  staged(digest: string): string | undefined {
    return this.#staged.get(digest);
  }

  /** Passes the blob on unchanged, writing each chunk aside. */
  async *tee(digest: string, blob: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array, void, undefined> {
    const path = this.#stagePath(digest);
    const fh = await this.#open(path);
    let complete = false;
    try {
      const writer = new BatchedWriter(fh);
      for await (const chunk of blob) {
        await writer.write(chunk).catch((err: unknown) => {
          throw storageFailure(`cannot write ${path}`, err);
        });
        yield chunk;
      }
      // The blob iterator ends only after its length and digest were checked.
      await writer.flush().catch((err: unknown) => {
        throw storageFailure(`cannot write ${path}`, err);
      });
      complete = true;
    } finally {
      await this.#close(fh, path, digest, complete);
    }
  }

  /** Reads a blob nobody else needs straight into its staged file. */
  async fetch(digest: string, blob: AsyncIterable<Uint8Array>): Promise<void> {
    for await (const _ of this.tee(digest, blob)) {
      // tee writes; nothing else to do per chunk.
    }
  }

  /** A raw layer's bytes are the module file's: a second name for it, not a second copy. */
  async adopt(digest: string, file: string): Promise<void> {
    if (this.#staged.has(digest)) return;
    const path = this.#stagePath(digest);
    this.#partial.add(path);
    try {
      await link(file, path).catch(() => copyFile(file, path));
    } catch (err) {
      await rm(path, { force: true }).catch(() => {});
      this.#partial.delete(path);
      throw storageFailure(`cannot stage ${path}`, err);
    }
    this.#partial.delete(path);
    this.#staged.set(digest, path);
  }

  async discard(): Promise<void> {
    for (const path of [...this.#staged.values(), ...this.#partial])
      await rm(path, { force: true }).catch(() => {});
    this.#staged.clear();
    this.#partial.clear();
  }

  async #open(path: string): Promise<FileHandle> {
    this.#partial.add(path);
    try {
      return await open(path, 'wx', 0o644);
    } catch (err) {
      this.#partial.delete(path);
      throw storageFailure(`cannot create ${path}`, err);
    }
  }

  async #close(fh: FileHandle, path: string, digest: string, complete: boolean): Promise<void> {
    let closed = true;
    await fh.close().catch(() => {
      closed = false;
    });
    if (complete && closed) {
      this.#partial.delete(path);
      this.#staged.set(digest, path);
      return;
    }
    await rm(path, { force: true }).catch(() => {});
    this.#partial.delete(path);
    if (complete) throw storageFailure(`cannot write ${path}`, new Error('close failed'));
  }
}

function repositoryOf(target: Omit<RegistryTarget, 'reference'>): RepositoryTarget {
  if (!isValidRegistryHost(target.registry)) {
    throw new WasmMirrorError('INVALID_REFERENCE', `invalid registry host '${target.registry}'`);
  }
  const repo: RepositoryTarget = {
    registry: target.registry,
    repository: target.repository,
    insecure: target.insecure,
  };
  if (target.credentials !== undefined) repo.credentials = target.credentials;
  return repo;
}

/** Gathers chunks into ~1 MiB writes: fewer syscalls than one write per network chunk. */
class BatchedWriter {
  readonly #fh: FileHandle;
  #pending: Uint8Array[] = [];
  #bytes = 0;

  constructor(fh: FileHandle) {
    this.#fh = fh;
  }

  async write(chunk: Uint8Array): Promise<void> {
    this.#pending.push(chunk);
    this.#bytes += chunk.length;
    if (this.#bytes >= MiB) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#bytes === 0) return;
    const chunks = this.#pending;
    const total = this.#bytes;
    this.#pending = [];
    this.#bytes = 0;
    const { bytesWritten } = await this.#fh.writev(chunks);
    // A short gathered write is rare on regular files; finish the rest plainly.
    if (bytesWritten < total) await writeAll(this.#fh, Buffer.concat(chunks, total).subarray(bytesWritten));
  }
}
