/**
 * ObjectStore on S3. Module files stream through `@aws-sdk/lib-storage` (multipart above one
 * part), every write carries an S3-checked SHA-256, and `create` is a conditional write
 * (`If-None-Match: *`) so two publishers can never both write one manifest version.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  PutObjectCommand,
  type PutObjectCommandInput,
  paginateListObjectsV2,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { validateObjectKey } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type {
  ByteRange,
  ObjectBody,
  ObjectInfo,
  ObjectStore,
  ObjectStream,
  PutOptions,
} from '../../shared/core/ports.ts';
import { isNotFound, sdkName, sdkStatus, wrapSdkError } from './aws-errors.ts';

export interface S3ObjectStoreOptions {
  bucket: string;
  /** Injected client (tests, shared container client); a default one is built otherwise. */
  client?: S3Client;
  /** Used only when no client is given (region, endpoint, forcePathStyle for emulators). */
  clientConfig?: S3ClientConfig;
  /** Multipart part size in bytes; files up to this size go up in one PutObject. Default 8 MiB. */
  partSize?: number;
  /** Parts uploaded in parallel. Default 4. */
  queueSize?: number;
}

const MIN_PART_SIZE = 5 * 1024 * 1024;

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly client: S3Client;
  private readonly partSize: number;
  private readonly queueSize: number;

  constructor(options: S3ObjectStoreOptions) {
    this.bucket = options.bucket;
    this.client = options.client ?? new S3Client(options.clientConfig ?? {});
    this.partSize = Math.max(options.partSize ?? 8 * 1024 * 1024, MIN_PART_SIZE);
    this.queueSize = options.queueSize ?? 4;
  }

  async delete(key: string): Promise<void> {
    validateObjectKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw wrapSdkError('STORAGE_FAILURE', `S3 DeleteObject ${key}`, err, { key });
    }
  }

  async head(key: string): Promise<ObjectInfo | undefined> {
    validateObjectKey(key);
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return toInfo(key, out, out.ContentLength ?? 0);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw wrapSdkError('STORAGE_FAILURE', `S3 HeadObject ${key}`, err, { key });
    }
  }

  async getBytes(
    key: string,
    maxBytes: number,
  ): Promise<{ info: ObjectInfo; bytes: Uint8Array } | undefined> {
    validateObjectKey(key);
    const out = await this.getObject(key);
    if (out === undefined) return undefined;
    const size = out.ContentLength ?? 0;
    const body = out.Body as (AsyncIterable<Uint8Array> & { destroy?: () => void }) | undefined;
    if (size > maxBytes) {
      body?.destroy?.();
      throw sizeExceeded(key, size, maxBytes);
    }
    const chunks: Uint8Array[] = [];
    let received = 0;
    for await (const chunk of body ?? []) {
      received += chunk.byteLength;
      // Content-Length is the sender's claim; the cap holds on what actually arrives.
      if (received > maxBytes) {
        body?.destroy?.();
        throw sizeExceeded(key, received, maxBytes);
      }
      chunks.push(chunk);
    }
    return { info: toInfo(key, out, received), bytes: concat(chunks, received) };
  }

  async getStream(key: string, range?: ByteRange): Promise<ObjectStream | undefined> {
    validateObjectKey(key);
    if (range && (range.start < 0 || (range.end !== undefined && range.end < range.start))) {
      throw rangeNotSatisfiable(key, range);
    }
    const out = await this.getObject(key, range);
    if (out === undefined) return undefined;
    const total = totalFromContentRange(out.ContentRange) ?? out.ContentLength ?? 0;
    const body = (out.Body as AsyncIterable<Uint8Array> | undefined) ?? emptyBody();
    return { info: toInfo(key, out, total), body };
  }

  put(key: string, body: ObjectBody, options: PutOptions): Promise<ObjectInfo> {
    return this.write(key, body, options, false);
  }

  create(key: string, body: ObjectBody, options: PutOptions): Promise<ObjectInfo> {
    return this.write(key, body, options, true);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (prefix.includes('\0') || prefix.includes('\\') || prefix.startsWith('/')) {
      throw new WasmMirrorError('INVALID_KEY', `invalid key prefix ${JSON.stringify(prefix)}`);
    }
    try {
      // S3 returns keys in UTF-8 binary order, which is the lexicographic order the port promises.
      for await (const page of paginateListObjectsV2(
        { client: this.client },
        { Bucket: this.bucket, Prefix: prefix },
      )) {
        for (const item of page.Contents ?? []) {
          if (item.Key === undefined) continue;
          yield {
            key: item.Key,
            size: item.Size ?? 0,
            etag: item.ETag ?? '',
            ...(item.LastModified ? { lastModified: item.LastModified } : {}),
          };
        }
      }
    } catch (err) {
      throw wrapSdkError('STORAGE_FAILURE', `S3 ListObjectsV2 ${prefix}`, err, { prefix });
    }
  }

  private async getObject(key: string, range?: ByteRange): Promise<GetObjectCommandOutput | undefined> {
    try {
      return await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}),
        }),
      );
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (range && (sdkStatus(err) === 416 || sdkName(err) === 'InvalidRange')) {
        throw rangeNotSatisfiable(key, range, err);
      }
      throw wrapSdkError('STORAGE_FAILURE', `S3 GetObject ${key}`, err, { key });
    }
  }

  private async write(key: string, body: ObjectBody, options: PutOptions, createOnly: boolean) {
    validateObjectKey(key);
    const base: PutObjectCommandInput = {
      Bucket: this.bucket,
      Key: key,
      ContentType: options.contentType,
      ...(options.cacheControl ? { CacheControl: options.cacheControl } : {}),
      ...(createOnly ? { IfNoneMatch: '*' } : {}),
    };
    try {
      if (body instanceof Uint8Array) {
        const checksum = options.sha256 ? checkDigest(key, sha256(body), options.sha256) : undefined;
        const out = await this.client.send(
          new PutObjectCommand({
            ...base,
            Body: body,
            ContentLength: body.byteLength,
            ...(checksum ? { ChecksumSHA256: checksum } : {}),
          }),
        );
        return { key, size: body.byteLength, etag: out.ETag ?? '', contentType: options.contentType };
      }
      return await this.uploadFile(key, body, options, base);
    } catch (err) {
      throw translateWriteError(key, err, createOnly);
    }
  }

  private async uploadFile(
    key: string,
    file: { path: string; size: number },
    options: PutOptions,
    base: PutObjectCommandInput,
  ): Promise<ObjectInfo> {
    // The staged file is checked before upload so a corrupt scratch file never reaches the bucket.
    const staged = await sha256File(file.path);
    if (staged.size !== file.size) {
      throw new WasmMirrorError(
        'LENGTH_MISMATCH',
        `${file.path} has ${staged.size} bytes, expected ${file.size}`,
        {
          details: { key, expected: file.size, actual: staged.size },
        },
      );
    }
    const checksum = options.sha256 ? checkDigest(key, staged.hex, options.sha256) : undefined;
    const singlePart = file.size <= this.partSize;
    const upload = new Upload({
      client: this.client,
      partSize: this.partSize,
      queueSize: this.queueSize,
      leavePartsOnError: false,
      params: {
        ...base,
        Body: createReadStream(file.path),
        ContentLength: file.size,
        // A whole-object SHA-256 only fits a single PutObject; multipart gets per-part SHA-256
        // checks from S3 and the object digest recorded as metadata.
        ...(checksum && singlePart ? { ChecksumSHA256: checksum } : {}),
        ...(checksum && !singlePart ? { ChecksumAlgorithm: 'SHA256' as const } : {}),
        ...(options.sha256 ? { Metadata: { sha256: options.sha256 } } : {}),
      },
    });
    const out = await upload.done();
    return { key, size: file.size, etag: out.ETag ?? '', contentType: options.contentType };
  }
}

function translateWriteError(key: string, err: unknown, createOnly: boolean): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const status = sdkStatus(err);
  const name = sdkName(err);
  if (createOnly && (status === 412 || name === 'PreconditionFailed')) {
    return new WasmMirrorError('ALREADY_EXISTS', `${key} already exists`, { cause: err, details: { key } });
  }
  // 409 ConditionalRequestConflict means another conditional write to the key was in flight and
  // S3 could not decide this one: the object may or may not exist afterwards, and AWS asks the
  // caller to retry (the retry then gets 200 or a definite 412). Never ALREADY_EXISTS.
  if (status === 409 || name === 'ConditionalRequestConflict') {
    return new WasmMirrorError('STORAGE_FAILURE', `S3 write ${key}: conflicting conditional write, retry`, {
      cause: err,
      retryable: true,
      details: { key, awsError: name, httpStatus: status },
    });
  }
  if (name === 'BadDigest' || name === 'InvalidDigest' || name === 'XAmzContentSHA256Mismatch') {
    return new WasmMirrorError('DIGEST_MISMATCH', `S3 rejected the checksum of ${key}`, {
      cause: err,
      details: { key },
    });
  }
  return wrapSdkError('STORAGE_FAILURE', `S3 write ${key}`, err, { key });
}

function checkDigest(key: string, actualHex: string, expectedHex: string): string {
  if (actualHex !== expectedHex.toLowerCase()) {
    throw new WasmMirrorError(
      'DIGEST_MISMATCH',
      `sha256 of ${key} is ${actualHex}, expected ${expectedHex}`,
      {
        details: { key, expected: expectedHex, actual: actualHex },
      },
    );
  }
  return Buffer.from(actualHex, 'hex').toString('base64');
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function sha256File(path: string): Promise<{ hex: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).byteLength;
  }
  return { hex: hash.digest('hex'), size };
}

function rangeNotSatisfiable(key: string, range: ByteRange, cause?: unknown): WasmMirrorError {
  return new WasmMirrorError('RANGE_NOT_SATISFIABLE', `range ${range.start}-${range.end ?? ''} of ${key}`, {
    ...(cause ? { cause } : {}),
    details: { key, range },
  });
}

function toInfo(
  key: string,
  out: Pick<HeadObjectCommandOutput, 'ETag' | 'ContentType' | 'LastModified'>,
  size: number,
): ObjectInfo {
  return {
    key,
    size,
    etag: out.ETag ?? '',
    ...(out.ContentType ? { contentType: out.ContentType } : {}),
    ...(out.LastModified ? { lastModified: out.LastModified } : {}),
  };
}

function totalFromContentRange(value: string | undefined): number | undefined {
  const match = value ? /\/(\d+)$/.exec(value) : null;
  return match?.[1] ? Number(match[1]) : undefined;
}

function sizeExceeded(key: string, size: number, maxBytes: number): WasmMirrorError {
  return new WasmMirrorError('SIZE_EXCEEDED', `${key} is larger than ${maxBytes} bytes`, {
    details: { key, size, maxBytes },
  });
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

async function* emptyBody(): AsyncIterable<Uint8Array> {}
