/**
 * Resolves a reference to one Wasm module, whatever the packaging (DESIGN.md, "Wasm formats
 * accepted"), and streams it into a file: blob → size and digest check → (gunzip → tar) → magic,
 * size cap, sha256 and section walk → temp file → engine validation (never instantiated) →
 * rename. Nothing holds the whole module in memory while it downloads, and a failed pull leaves
 * no file behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { toWasmMirrorError, WasmMirrorError } from '../errors.ts';
import { writeAll } from '../io.ts';
import { RegistryClient, type RegistryClientOptions, type RepositoryTarget } from '../oci/client.ts';
import { isImageManifestMediaType, isIndexMediaType } from '../oci/media-types.ts';
import { assertTagOrDigest, isValidRegistryHost } from '../oci/reference.ts';
import type { PulledModule, PullOptions, RegistryTarget, WasmPuller } from '../ports.ts';
import { asDescriptor, COMPAT_ENTRY, classifyImage, rankIndexEntries, type WasmLayer } from './formats.ts';
import { WasmInspector } from './inspect.ts';
import { extractByBaseName } from './tar.ts';
import { validateCoreModuleFile } from './validate.ts';

const MiB = 1024 * 1024;

export interface OciWasmPullerOptions extends RegistryClientOptions {
  /** A client to share (and its token cache); built from the other options when absent. */
  client?: RegistryClient;
  /** Default module size cap (256 MiB, like Istio); PullOptions.maxModuleBytes overrides it per pull. */
  maxModuleBytes?: number;
  /** Cap on a compat image's compressed layer (default twice the module cap). */
  maxLayerBytes?: number;
  /** Cap on a compat layer's decompressed tar stream (default twice the module cap plus 1 MiB). */
  maxUncompressedBytes?: number;
  /** Index entries inspected at most (default 16). */
  maxIndexEntries?: number;
}

export interface ResolvedWasm extends WasmLayer {
  /** Digest of the manifest (or index) the reference points to. */
  ociDigest: string;
  /** Digest of the image manifest holding the layer (differs from ociDigest for an index). */
  imageDigest: string;
}

export class OciWasmPuller implements WasmPuller {
  readonly client: RegistryClient;
  readonly #maxModuleBytes: number;
  readonly #maxLayerBytes: number | undefined;
  readonly #maxUncompressedBytes: number | undefined;
  readonly #maxIndexEntries: number;

  constructor(options: OciWasmPullerOptions = {}) {
    this.client = options.client ?? new RegistryClient(options);
    this.#maxModuleBytes = options.maxModuleBytes ?? 256 * MiB;
    this.#maxLayerBytes = options.maxLayerBytes;
    this.#maxUncompressedBytes = options.maxUncompressedBytes;
    this.#maxIndexEntries = options.maxIndexEntries ?? 16;
  }

  async pullToFile(
    target: RegistryTarget,
    destPath: string,
    options: PullOptions = {},
  ): Promise<PulledModule> {
    const repo = repositoryOf(target);
    assertTagOrDigest(target.reference);
    const signal = options.signal;
    const maxModule = options.maxModuleBytes ?? this.#maxModuleBytes;
    const resolved = await this.resolve(target, { signal });

    const temp = join(dirname(destPath), `.${basename(destPath)}.${randomBytes(6).toString('hex')}.tmp`);
    let fh: FileHandle | undefined;
    try {
      fh = await open(temp, 'wx', 0o644);
    } catch (err) {
      throw new WasmMirrorError('STORAGE_FAILURE', `cannot create ${temp}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    try {
      const inspector = new WasmInspector();
      // A raw layer's digest is the module's sha256 and the blob stream already verifies it.
      const hash = resolved.archive === 'none' ? undefined : createHash('sha256');
      const writer = new BatchedWriter(fh);
      let size = 0;
      const sink = async (chunk: Uint8Array) => {
        size += chunk.length;
        if (size > maxModule) {
          throw new WasmMirrorError('SIZE_EXCEEDED', `module is over the ${maxModule}-byte cap`);
        }
        inspector.push(chunk);
        hash?.update(chunk);
        await writer.write(chunk);
      };
      const blobOptions = {
        ...(signal === undefined ? {} : { signal }),
        maxBytes: resolved.archive === 'none' ? maxModule : (this.#maxLayerBytes ?? 2 * maxModule),
        ...(options.onProgress === undefined ? {} : { onProgress: options.onProgress }),
      };
      const blob = this.client.blob(repo, resolved.layer, blobOptions);
      if (resolved.archive === 'none') {
        for await (const chunk of blob) await sink(chunk);
      } else {
        // Room for the module twice over plus tar headers and small neighbours.
        const maxArchiveBytes = this.#maxUncompressedBytes ?? 2 * maxModule + MiB;
        let result = { found: false, size: 0 };
        // pipeline() may reject with the AbortError of a stream it tore down rather than the
        // error that caused it, so the first error from either end is kept here.
        let cause: unknown;
        const source = async function* () {
          try {
            yield* blob;
          } catch (err) {
            cause ??= err;
            throw err;
          }
        };
        const extract = async (input: AsyncIterable<Uint8Array>) => {
          try {
            result = await extractByBaseName(input, sink, {
              baseName: COMPAT_ENTRY,
              maxEntryBytes: maxModule,
              maxArchiveBytes,
            });
          } catch (err) {
            cause ??= err;
            throw err;
          }
        };
        try {
          if (resolved.archive === 'tar+gzip')
            await pipeline(Readable.from(source()), createGunzip(), extract);
          else await pipeline(Readable.from(source()), extract);
        } catch (err) {
          throw translateStreamError(cause ?? err);
        }
        if (!result.found) {
          throw new WasmMirrorError(
            'UNSUPPORTED_FORMAT',
            `image's last layer has no ${COMPAT_ENTRY}, so no Wasm module`,
          );
        }
      }
      const kind = inspector.end();
      await writer.flush();
      // No fsync: rename makes the file appear whole or not at all, and this is a staging copy
      // whose durable home is the object store.
      await fh.close();
      fh = undefined;
      if (kind === 'module') await validateCoreModuleFile(temp, inspector.sections);
      await rename(temp, destPath).catch((err: unknown) => {
        throw new WasmMirrorError('STORAGE_FAILURE', `cannot move the module to ${destPath}`, { cause: err });
      });
      const pulled: PulledModule = {
        ociDigest: resolved.ociDigest,
        sha256: hash === undefined ? resolved.layer.digest.slice('sha256:'.length) : hash.digest('hex'),
        size,
        format: resolved.format,
        kind,
      };
      const abi = kind === 'module' ? inspector.proxyAbi : undefined;
      if (abi !== undefined) pulled.abi = abi;
      return pulled;
    } catch (err) {
      await fh?.close().catch(() => {});
      await rm(temp, { force: true }).catch(() => {});
      throw toWasmMirrorError(err);
    }
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

  /** Which manifest and layer hold the module, without downloading any layer. */
  async resolve(target: RegistryTarget, options: { signal?: AbortSignal } = {}): Promise<ResolvedWasm> {
    const repo = repositoryOf(target);
    const top = await this.client.getManifest(repo, target.reference, options);
    if (isImageManifestMediaType(top.mediaType)) {
      return { ...classifyImage(top.json), ociDigest: top.digest, imageDigest: top.digest };
    }
    if (!isIndexMediaType(top.mediaType) || !Array.isArray(top.json.manifests)) {
      throw new WasmMirrorError('UNSUPPORTED_MEDIA_TYPE', `unsupported manifest media type ${top.mediaType}`);
    }
    const entries = top.json.manifests.map((m, i) => asDescriptor(m, `index entry ${i}`));
    let compat: ResolvedWasm | undefined;
    let lastError: WasmMirrorError | undefined;
    for (const entry of rankIndexEntries(entries).slice(0, this.#maxIndexEntries)) {
      // One level only: an index inside an index is not a packaging any Wasm tool produces.
      if (!isImageManifestMediaType(entry.mediaType)) continue;
      const child = await this.client.getManifest(repo, entry.digest, options);
      if (child.bytes.length !== entry.size) {
        throw new WasmMirrorError(
          'LENGTH_MISMATCH',
          `index entry ${entry.digest} is ${child.bytes.length} bytes, not ${entry.size}`,
        );
      }
      if (!isImageManifestMediaType(child.mediaType)) continue;
      try {
        const layer = classifyImage(child.json);
        const resolved = { ...layer, ociDigest: top.digest, imageDigest: child.digest };
        if (layer.format !== 'compat-image') return resolved;
        compat ??= resolved;
      } catch (err) {
        if (err instanceof WasmMirrorError && err.code === 'UNSUPPORTED_FORMAT') lastError = err;
        else throw err;
      }
    }
    if (compat !== undefined) return compat;
    throw new WasmMirrorError(
      'UNSUPPORTED_FORMAT',
      `index ${top.digest} has no entry holding a Wasm module${lastError === undefined ? '' : ` (${lastError.message})`}`,
    );
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

/** zlib's errors become a format error; ours pass through. */
function translateStreamError(err: unknown): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const code = (err as { code?: string }).code ?? '';
  if (code.startsWith('Z_') || code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return new WasmMirrorError('UNSUPPORTED_FORMAT', `layer is not valid gzip (${(err as Error).message})`, {
      cause: err,
    });
  }
  return toWasmMirrorError(err);
}
