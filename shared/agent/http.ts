/**
 * A small HTTP client for the agent on node:http, not fetch: every byte is counted as it arrives
 * so caps stop a hostile or broken mirror early, Content-Length is compared with what the
 * manifest promised before reading, JSON documents may arrive compressed but are capped by
 * their decoded size, and keep-alive sockets are bounded by the download parallelism.
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { promisify } from 'node:util';
import { brotliDecompress, gunzip } from 'node:zlib';
import { WasmMirrorError } from '../core/errors.ts';
import { readCapped as readCappedChunks } from '../core/io.ts';

export interface HttpClientOptions {
  /** Sockets per origin, i.e. the download parallelism. */
  maxSockets: number;
  /** Socket idle timeout: a mirror that stops sending for this long fails the request. */
  idleTimeoutMs: number;
}

export interface GetResult {
  status: number;
  headers: IncomingMessage['headers'];
  res: IncomingMessage;
}

export class HttpClient {
  readonly #http: http.Agent;
  readonly #https: https.Agent;
  readonly #idleTimeoutMs: number;
  requests = 0;

  constructor(options: HttpClientOptions) {
    this.#http = new http.Agent({
      keepAlive: true,
      maxSockets: options.maxSockets,
      timeout: options.idleTimeoutMs,
    });
    this.#https = new https.Agent({
      keepAlive: true,
      maxSockets: options.maxSockets,
      timeout: options.idleTimeoutMs,
    });
    this.#idleTimeoutMs = options.idleTimeoutMs;
  }

  close(): void {
    this.#http.destroy();
    this.#https.destroy();
  }

  get(url: URL, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<GetResult> {
    this.requests++;
    const mod = url.protocol === 'https:' ? https : http;
    const agent = url.protocol === 'https:' ? this.#https : this.#http;
    return new Promise((resolve, reject) => {
      const req = mod.get(
        url,
        { agent, headers: { 'user-agent': 'wasm-mirror-agent', ...headers }, signal },
        (res) => {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, res });
        },
      );
      // The agents set each socket's idle timeout once; a stalled mirror fails the request.
      req.once('timeout', () => {
        req.destroy(
          new WasmMirrorError('TIMEOUT', `${url.href}: no data for ${this.#idleTimeoutMs} ms`, {
            retryable: true,
          }),
        );
      });
      req.on('error', (err) => {
        reject(
          err instanceof WasmMirrorError
            ? err
            : new WasmMirrorError('MIRROR_UNAVAILABLE', `${url.href}: ${err.message}`, {
                cause: err,
                retryable: true,
              }),
        );
      });
    });
  }
}

/** Drains and discards a response we do not want, so the socket can be reused or freed. */
export function discard(res: IncomingMessage): void {
  res.resume();
  res.on('error', () => {});
}

export function contentLength(headers: IncomingMessage['headers']): number | undefined {
  const v = headers['content-length'];
  if (v === undefined || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/**
 * Reads a whole body of at most `maxBytes` (the core's capped read: Content-Length first, then
 * every chunk). An oversized body is cut off at once rather than drained; a broken connection is
 * MIRROR_UNAVAILABLE.
 */
export async function readCapped(
  res: IncomingMessage,
  maxBytes: number,
  tooLarge: (received: number) => WasmMirrorError,
): Promise<Uint8Array> {
  const overflow = (received: number) => {
    res.destroy();
    return tooLarge(received);
  };
  try {
    return await readCappedChunks(res, maxBytes, overflow, contentLength(res.headers));
  } catch (err) {
    if (err instanceof WasmMirrorError) throw err;
    throw new WasmMirrorError('MIRROR_UNAVAILABLE', `reading the response failed: ${String(err)}`, {
      cause: err,
      retryable: true,
    });
  }
}

/** What the agent asks for on JSON documents; module bytes are always fetched as they are. */
export const JSON_ACCEPT_ENCODING = 'gzip, br';

export interface ReadDocumentOptions {
  /** Cap on the decoded body, and on the bytes on the wire. */
  maxBytes: number;
  /** A body over the cap as sent: declared, or counted on the wire. */
  tooLarge: (received: number) => WasmMirrorError;
  /** A compressed body that decodes past the cap. */
  bomb: () => WasmMirrorError;
  /** Called with the bytes received on the wire, as they arrive. */
  onWireBytes?: (n: number) => void;
}

const decoders = {
  gzip: promisify(gunzip),
  'x-gzip': promisify(gunzip),
  br: promisify(brotliDecompress),
} as const;

/**
 * Reads a JSON document that may be sent with `Content-Encoding: gzip` or `br`. The body on the
 * wire is capped, then decoded in one step whose output zlib itself stops at the cap, so a few
 * KiB that would inflate to gigabytes fail with DECOMPRESSION_BOMB having cost at most the cap
 * in memory. (One-shot decoding: a stream per small document costs far more CPU.) An encoding
 * the agent did not ask for, or a corrupt compressed body, is MIRROR_UNAVAILABLE; the decoded
 * bytes are verified afterwards anyway.
 */
export async function readDocument(res: IncomingMessage, options: ReadDocumentOptions): Promise<Uint8Array> {
  const { maxBytes, tooLarge, bomb, onWireBytes } = options;
  const encoding = String(res.headers['content-encoding'] ?? 'identity')
    .trim()
    .toLowerCase();
  const decode = Object.hasOwn(decoders, encoding) ? decoders[encoding as keyof typeof decoders] : undefined;
  if (decode === undefined && encoding !== 'identity' && encoding !== '') {
    res.destroy();
    throw new WasmMirrorError(
      'MIRROR_UNAVAILABLE',
      `unsupported Content-Encoding "${encoding.slice(0, 40)}"`,
    );
  }
  const counted = onWireBytes
    ? (async function* () {
        for await (const chunk of res as AsyncIterable<Buffer>) {
          onWireBytes(chunk.length);
          yield chunk;
        }
      })()
    : res;
  let wire: Uint8Array;
  try {
    wire = await readCappedChunks(
      counted,
      maxBytes,
      (n) => {
        res.destroy();
        return tooLarge(n);
      },
      contentLength(res.headers),
    );
  } catch (err) {
    res.destroy();
    if (err instanceof WasmMirrorError) throw err;
    throw new WasmMirrorError('MIRROR_UNAVAILABLE', `reading the response failed: ${String(err)}`, {
      cause: err,
      retryable: true,
    });
  }
  if (decode === undefined) return wire;
  try {
    return new Uint8Array(await decode(wire, { maxOutputLength: maxBytes }));
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw bomb();
    throw new WasmMirrorError('MIRROR_UNAVAILABLE', `the ${encoding} body does not decode: ${String(err)}`, {
      cause: err,
      retryable: true,
    });
  }
}

const WRITE_BATCH = 1024 * 1024;

export interface StreamOptions {
  /**
   * Fails with TIMEOUT when no byte arrives for this long while the body is being waited for
   * (time spent writing to disk does not count), so a stalled mirror frees the download slot.
   */
  stallTimeoutMs?: number;
}

/**
 * Streams a module body to `write`, hashing as it goes, and refuses it unless it is exactly
 * `size` bytes whose sha256 is `sha256`. Never passes on more than `size` bytes. Chunks are
 * handed over in batches of up to 1 MiB: one thread-pool round trip per batch rather than per
 * socket chunk, with at most a batch held in memory per download.
 *
 * Other bytes than the listed ones (a different hash, too many bytes, a declared or complete
 * body of another length) are HASH_MISMATCH / LENGTH_MISMATCH; a connection lost mid-body is
 * MIRROR_UNAVAILABLE and a stall is TIMEOUT, since neither says anything about the bytes.
 */
export function streamVerified(
  res: IncomingMessage,
  expected: { size: number; sha256: string; url: string },
  write: (chunks: Buffer[]) => Promise<void>,
  options: StreamOptions = {},
): Promise<void> {
  const { size, sha256, url } = expected;
  const { stallTimeoutMs } = options;
  const declared = contentLength(res.headers);
  if (declared !== undefined && declared !== size) {
    res.destroy();
    return Promise.reject(
      new WasmMirrorError(
        'LENGTH_MISMATCH',
        `${url}: Content-Length ${declared}, the manifest lists ${size} bytes`,
      ),
    );
  }
  // Event-driven rather than `for await`: with thousands of small modules the async iterator's
  // per-chunk promises are a measurable share of the agent's CPU.
  return new Promise<void>((resolve, reject) => {
    const hash = createHash('sha256');
    let total = 0;
    let batch: Buffer[] = [];
    let batched = 0;
    let ended = false;
    let settled = false;
    let stallTimer: NodeJS.Timeout | undefined;
    const unwatch = () => clearTimeout(stallTimer);
    const watch = () => {
      unwatch();
      if (stallTimeoutMs === undefined) return;
      stallTimer = setTimeout(
        () =>
          fail(
            new WasmMirrorError(
              'TIMEOUT',
              `${url}: no data for ${stallTimeoutMs} ms after ${total} of ${size} bytes`,
              { retryable: true },
            ),
          ),
        stallTimeoutMs,
      );
    };
    const fail = (err: WasmMirrorError) => {
      if (settled) return;
      settled = true;
      unwatch();
      res.destroy();
      reject(err);
    };
    const connectionLost = (cause?: unknown) =>
      fail(
        new WasmMirrorError(
          'MIRROR_UNAVAILABLE',
          `${url}: connection closed after ${total} of ${size} bytes`,
          { cause, retryable: true },
        ),
      );
    const finish = () => {
      unwatch();
      if (settled) return;
      if (total !== size) {
        // The mirror ended the body itself: a complete answer of another length.
        return fail(
          new WasmMirrorError('LENGTH_MISMATCH', `${url}: body ended after ${total} of ${size} bytes`),
        );
      }
      const actual = hash.digest('hex');
      if (actual !== sha256) {
        return fail(
          new WasmMirrorError('HASH_MISMATCH', `${url}: sha256 ${actual}, the manifest lists ${sha256}`),
        );
      }
      const last = batch;
      batch = [];
      (last.length > 0 ? write(last) : Promise.resolve()).then(
        () => {
          settled = true;
          resolve();
        },
        (err) => fail(new WasmMirrorError('STORAGE_FAILURE', `${url}: ${String(err)}`, { cause: err })),
      );
    };
    // The response may have been cut off while the caller was opening its file, before these
    // listeners existed; its 'close' is then already past.
    if (res.destroyed) return connectionLost();
    res.on('data', (chunk: Buffer) => {
      if (settled) return;
      watch();
      total += chunk.length;
      if (total > size) {
        return fail(new WasmMirrorError('LENGTH_MISMATCH', `${url}: more than the ${size} bytes listed`));
      }
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) {
        const full = batch;
        batch = [];
        batched = 0;
        res.pause();
        unwatch();
        write(full).then(
          () => {
            if (settled) return;
            watch();
            res.resume();
          },
          (err) => fail(new WasmMirrorError('STORAGE_FAILURE', `${url}: ${String(err)}`, { cause: err })),
        );
      }
    });
    res.once('end', () => {
      ended = true;
      finish();
    });
    res.once('error', (err) => connectionLost(err));
    // A connection that closes before Content-Length is reached ends without 'end'.
    res.once('close', () => {
      if (!ended) connectionLost();
    });
    watch();
  });
}
