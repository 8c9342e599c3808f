/**
 * HTTP request-header rules every server here shares (the embedded mirror, its OCI endpoint and
 * the agent's `--serve`): conditional requests, byte ranges, content coding.
 */

/** Weak comparison, as If-None-Match asks: `W/"x"` and `"x"` match; `*` matches anything. */
export function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const strip = (t: string) => t.trim().replace(/^W\//, '');
  return header.split(',').some((t) => strip(t) === strip(etag));
}

/** One `bytes=` range (the form agents and Envoy use); multi-range requests get the whole body. */
export function parseRange(
  header: string,
  size: number,
): { start: number; end: number } | undefined | 'unsatisfiable' {
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) return undefined;
  const [, a, b] = match;
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const suffix = Number(b);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(a);
  if (start >= size) return 'unsatisfiable';
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (end < start) return 'unsatisfiable';
  return { start, end };
}

/** Whether Accept-Encoding allows gzip (a `q=0` refuses it). */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined) return false;
  for (const part of header.split(',')) {
    const [coding, ...params] = part
      .trim()
      .toLowerCase()
      .split(';')
      .map((s) => s.trim());
    if (coding !== 'gzip' && coding !== 'x-gzip' && coding !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (q === undefined || Number(q.slice(2)) > 0) return true;
  }
  return false;
}

/** What a GET of a body of `size` bytes, whose validator is `etag`, answers for its Range headers. */
export type RangeAnswer =
  | {
      status: 200 | 206;
      range: { start: number; end: number } | undefined;
      headers: Record<string, string | number>;
    }
  | { status: 416; headers: Record<string, string> };

/**
 * Reads Range and If-Range (an If-Range naming another validator means "send the whole thing")
 * and says the status, the range to send and the Content-Range and Content-Length to send it with.
 */
export function answerRange(
  request: { range?: string | undefined; 'if-range'?: string | undefined },
  size: number,
  etag: string,
): RangeAnswer {
  const ifRange = request['if-range'];
  const parsed =
    request.range !== undefined && (ifRange === undefined || ifRange === etag)
      ? parseRange(request.range, size)
      : undefined;
  if (parsed === 'unsatisfiable') return { status: 416, headers: { 'content-range': `bytes */${size}` } };
  if (parsed === undefined) return { status: 200, range: undefined, headers: { 'content-length': size } };
  return {
    status: 206,
    range: parsed,
    headers: {
      'content-range': `bytes ${parsed.start}-${parsed.end}/${size}`,
      'content-length': parsed.end - parsed.start + 1,
    },
  };
}
