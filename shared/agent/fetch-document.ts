/**
 * One GET of a manifest document (the v2 index, a tree node, v1's latest.json, keys.json):
 * conditional when an ETag is held, compressed when the server can, capped by its decoded size,
 * and bounded in time as a whole so a mirror trickling bytes cannot hold a sync forever.
 */
import { toWasmMirrorError, WasmMirrorError } from '../core/errors.ts';
import { discard, type HttpClient, JSON_ACCEPT_ENCODING, readDocument } from './http.ts';

export type DocumentResponse =
  | { status: 'not-modified' }
  /**
   * 404 or 410; or 403, which S3 behind CloudFront answers for a missing key when the origin may
   * not list the bucket.
   */
  | { status: 'absent'; http: number }
  | { status: 'ok'; bytes: Uint8Array; etag: string | undefined };

export interface DocumentRequest {
  url: URL;
  /** Sent as If-None-Match; a 304 is then `not-modified`. */
  etag?: string | undefined;
  /** Cap on the decoded body. */
  maxBytes: number;
  /** The whole request, body included, must finish within this. */
  timeoutMs: number;
  /** The error for a body over the cap as sent. */
  tooLarge: (received: number) => WasmMirrorError;
  onWireBytes?: (n: number) => void;
  signal?: AbortSignal | undefined;
}

export async function getDocument(http: HttpClient, request: DocumentRequest): Promise<DocumentResponse> {
  const { url, maxBytes } = request;
  const headers: Record<string, string> = { 'accept-encoding': JSON_ACCEPT_ENCODING };
  if (request.etag !== undefined) headers['if-none-match'] = request.etag;
  // A mirror trickling bytes never trips the idle timeout; this bounds the whole request.
  const deadline = AbortSignal.timeout(request.timeoutMs);
  const signal = request.signal ? AbortSignal.any([request.signal, deadline]) : deadline;
  try {
    const got = await http.get(url, headers, signal);
    if (got.status === 304 && request.etag !== undefined) {
      discard(got.res);
      return { status: 'not-modified' };
    }
    if (got.status === 404 || got.status === 410 || got.status === 403) {
      discard(got.res);
      return { status: 'absent', http: got.status };
    }
    if (got.status !== 200) {
      discard(got.res);
      throw new WasmMirrorError('MIRROR_UNAVAILABLE', `${url.href}: HTTP ${got.status}`, { retryable: true });
    }
    const bytes = await readDocument(got.res, {
      maxBytes,
      tooLarge: request.tooLarge,
      bomb: () =>
        new WasmMirrorError(
          'DECOMPRESSION_BOMB',
          `${url.href}: the compressed body decodes to more than the cap of ${maxBytes} bytes`,
        ),
      ...(request.onWireBytes ? { onWireBytes: request.onWireBytes } : {}),
    });
    return { status: 'ok', bytes, etag: typeof got.headers.etag === 'string' ? got.headers.etag : undefined };
  } catch (err) {
    if (deadline.aborted && !request.signal?.aborted) {
      throw new WasmMirrorError('TIMEOUT', `${url.href}: no complete answer within ${request.timeoutMs} ms`, {
        cause: err,
        retryable: true,
      });
    }
    throw toWasmMirrorError(err);
  }
}
