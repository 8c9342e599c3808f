/**
 * The mirror's CloudFront distribution on 127.0.0.1: a stand-in (no CloudFront emulator exists)
 * that runs the real function code from the stack (`/v2*`'s two, the default behaviour's) with the event
 * shape CloudFront Functions pass, reads the object from the S3 emulator as the S3 origin would
 * (Range, HEAD), answers a missing key with the error document as a 404 (the distribution's
 * error responses), and runs the viewer-response function only below 400, as CloudFront does.
 * Its own logic is only that plumbing; everything a client sees is decided by the deployed code.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runInNewContext } from 'node:vm';
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { registryRequestCode, registryResponseCode } from '../../../infra/lib/cloudfront-functions.ts';
import { VIEWER_REQUEST_CODE } from '../../../infra/lib/storage-stack.ts';
import { registryKeys } from '../../../shared/core/storage-keys.ts';

type CfHeaders = Record<string, { value: string; multiValue?: { value: string }[] }>;

interface CfRequest {
  method: string;
  uri: string;
  querystring: CfHeaders;
  headers: CfHeaders;
  cookies: Record<string, never>;
}

interface CfResponse {
  statusCode: number;
  statusDescription?: string;
  headers?: CfHeaders;
  body?: string | { encoding: 'text' | 'base64'; data: string };
}

type Handler = (event: unknown) => CfRequest | CfResponse;

export interface CloudFrontStandIn {
  url: string;
  host: string;
  /** Requests that reached the origin (the bucket), by key. */
  originReads: string[];
  stop(): Promise<void>;
}

const load = (code: string): Handler => runInNewContext(`${code}\n;handler`, {}) as Handler;

export async function startCloudFrontStandIn(options: {
  s3: S3Client;
  bucket: string;
  sourceIds: string[];
}): Promise<CloudFrontStandIn> {
  const registryRequest = load(registryRequestCode(options.sourceIds));
  const registryResponse = load(registryResponseCode());
  const defaultRequest = load(VIEWER_REQUEST_CODE);
  const originReads: string[] = [];

  const event = (eventType: string, request: CfRequest, response?: CfResponse) => ({
    version: '1.0',
    context: { eventType, distributionDomainName: 'd111111abcdef8.cloudfront.net', distributionId: 'E1' },
    viewer: { ip: '127.0.0.1' },
    request,
    ...(response === undefined ? {} : { response }),
  });

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const request: CfRequest = {
      method: req.method ?? 'GET',
      uri: q === -1 ? target : target.slice(0, q),
      querystring: querystringOf(q === -1 ? '' : target.slice(q + 1)),
      headers: Object.fromEntries(
        Object.entries(req.headers).map(([k, v]) => [k, { value: [v].flat().join(',') }]),
      ),
      cookies: {},
    };
    const registry = request.uri.startsWith('/v2');
    const out = (registry ? registryRequest : defaultRequest)(event('viewer-request', request));
    if ('statusCode' in out) return send(res, out, request.method);
    if (!['GET', 'HEAD'].includes(out.method)) {
      // A function that let a write through: CloudFront would forward it; the stand-in says so.
      return send(res, { statusCode: 501, statusDescription: 'Write Forwarded' }, request.method);
    }
    const key = decodeURIComponent(out.uri.slice(1));
    const response = await fromOrigin(key, out, request.method === 'HEAD');
    if (response === undefined) {
      // The distribution's error responses: the error document, as a 404, no function.
      const document = (await fromOrigin(registryKeys.notFound, out, false)) ?? { statusCode: 404 };
      return send(res, { ...document, statusCode: 404 }, request.method);
    }
    // Only the registry behaviour has a viewer-response function.
    const answer = registry
      ? (registryResponse(event('viewer-response', out, response)) as CfResponse)
      : response;
    return send(res, answer, request.method);
  };

  const fromOrigin = async (
    key: string,
    request: CfRequest,
    head: boolean,
  ): Promise<CfResponse | undefined> => {
    originReads.push(key);
    const range = request.headers.range?.value;
    try {
      const got = head
        ? await options.s3.send(new HeadObjectCommand({ Bucket: options.bucket, Key: key }))
        : await options.s3.send(
            new GetObjectCommand({
              Bucket: options.bucket,
              Key: key,
              ...(range === undefined ? {} : { Range: range }),
            }),
          );
      const headers: CfHeaders = {};
      const set = (name: string, value: string | number | Date | undefined) => {
        if (value !== undefined)
          headers[name] = { value: value instanceof Date ? value.toUTCString() : String(value) };
      };
      set('content-type', got.ContentType);
      set('content-length', got.ContentLength);
      set('cache-control', got.CacheControl);
      set('etag', got.ETag);
      set('last-modified', got.LastModified);
      set('accept-ranges', 'bytes');
      const contentRange = 'ContentRange' in got ? got.ContentRange : undefined;
      set('content-range', contentRange);
      for (const [name, value] of Object.entries(got.Metadata ?? {})) set(`x-amz-meta-${name}`, value);
      const body =
        'Body' in got && got.Body !== undefined
          ? Buffer.from(await got.Body.transformToByteArray())
          : undefined;
      return {
        statusCode: contentRange === undefined ? 200 : 206,
        headers,
        ...(body === undefined ? {} : { body: { encoding: 'base64', data: body.toString('base64') } }),
      };
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (status === 404 || status === 403) return undefined;
      throw err;
    }
  };

  const server: Server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      handle(req, res).catch((err: Error) => {
        if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`stand-in failed: ${err.message}`);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    originReads,
    stop: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

function querystringOf(query: string): CfHeaders {
  const out: CfHeaders = {};
  for (const [name, value] of new URLSearchParams(query)) {
    const existing = out[name];
    if (existing === undefined) out[name] = { value };
    else existing.multiValue = [...(existing.multiValue ?? [{ value: existing.value }]), { value }];
  }
  return out;
}

function send(res: ServerResponse, response: CfResponse, method: string): void {
  const headers: Record<string, string> = {};
  for (const [name, { value }] of Object.entries(response.headers ?? {})) headers[name] = value;
  const body =
    response.body === undefined
      ? Buffer.alloc(0)
      : typeof response.body === 'string'
        ? Buffer.from(response.body)
        : Buffer.from(response.body.data, response.body.encoding === 'base64' ? 'base64' : 'utf8');
  if (headers['content-length'] === undefined || method !== 'HEAD')
    headers['content-length'] = String(body.length);
  res.writeHead(response.statusCode, response.statusDescription, headers);
  res.end(method === 'HEAD' ? undefined : body);
}
