/**
 * A small HTTP client for the agent on node:http, not fetch: every byte is counted as it arrives
 * so caps stop a hostile or broken mirror early, Content-Length is compared with what the
 * manifest promised before reading, and keep-alive sockets are bounded by the download
 * parallelism.
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { WasmMirrorError } from '../errors.ts';

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
    this.#http = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets });
    this.#https = new https.Agent({ keepAlive: true, maxSockets: options.maxSockets });
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
      req.setTimeout(this.#idleTimeoutMs, () => {
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
 * Reads a whole body of at most `maxBytes`. The cap is checked against Content-Length first and
 * then against every chunk, so an endless or oversized body costs at most `maxBytes` of memory.
 */
export async function readCapped(
  res: IncomingMessage,
  maxBytes: number,
  tooLarge: (received: number) => WasmMirrorError,
): Promise<Uint8Array> {
  const declared = contentLength(res.headers);
  if (declared !== undefined && declared > maxBytes) {
    res.destroy();
    throw tooLarge(declared);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > maxBytes) {
        res.destroy();
        throw tooLarge(total);
      }
      chunks.push(chunk);
    }
  } catch (err) {
    if (err instanceof WasmMirrorError) throw err;
    throw new WasmMirrorError('MIRROR_UNAVAILABLE', `reading the response failed: ${String(err)}`, {
      cause: err,
      retryable: true,
    });
  }
  return new Uint8Array(Buffer.concat(chunks, total));
}

const WRITE_BATCH = 1024 * 1024;

/**
 * Streams a module body to `write`, hashing as it goes, and refuses it unless it is exactly
 * `size` bytes whose sha256 is `sha256`. Never passes on more than `size` bytes. Chunks are
 * handed over in batches of up to 1 MiB: one thread-pool round trip per batch rather than per
 * socket chunk, with at most a batch held in memory per download.
 */
export async function streamVerified(
  res: IncomingMessage,
  expected: { size: number; sha256: string; url: string },
  write: (chunks: Buffer[]) => Promise<void>,
): Promise<void> {
  const declared = contentLength(res.headers);
  if (declared !== undefined && declared !== expected.size) {
    res.destroy();
    throw new WasmMirrorError(
      'LENGTH_MISMATCH',
      `${expected.url}: Content-Length ${declared}, the manifest lists ${expected.size} bytes`,
    );
  }
  const hash = createHash('sha256');
  let total = 0;
  let batch: Buffer[] = [];
  let batched = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      total += chunk.length;
      if (total > expected.size) {
        res.destroy();
        throw new WasmMirrorError(
          'LENGTH_MISMATCH',
          `${expected.url}: more than the ${expected.size} bytes listed`,
        );
      }
      hash.update(chunk);
      batch.push(chunk);
      batched += chunk.length;
      if (batched >= WRITE_BATCH) {
        await write(batch);
        batch = [];
        batched = 0;
      }
    }
  } catch (err) {
    if (err instanceof WasmMirrorError) throw err;
    // The connection ended before Content-Length was reached: a truncated body.
    throw new WasmMirrorError(
      'LENGTH_MISMATCH',
      `${expected.url}: body ended after ${total} of ${expected.size} bytes`,
      {
        cause: err,
        retryable: true,
      },
    );
  }
  if (total !== expected.size) {
    throw new WasmMirrorError(
      'LENGTH_MISMATCH',
      `${expected.url}: got ${total} bytes, the manifest lists ${expected.size}`,
      {
        retryable: true,
      },
    );
  }
  const actual = hash.digest('hex');
  if (actual !== expected.sha256) {
    throw new WasmMirrorError(
      'HASH_MISMATCH',
      `${expected.url}: sha256 ${actual}, the manifest lists ${expected.sha256}`,
    );
  }
  if (batch.length > 0) await write(batch);
}
