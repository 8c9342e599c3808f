/**
 * The registry view's writer on S3: `registry/…` objects carry the headers CloudFront answers
 * `/v2/` with (Content-Type, Cache-Control, and user metadata its viewer-response function turns
 * into Docker-Content-Digest and Link). Blobs are server-side copies of the kept content, so a
 * large layer never passes through the function.
 */
import { CopyObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { validateObjectKey } from '../../shared/core/domain.ts';
import { WasmMirrorError } from '../../shared/core/errors.ts';
import type { RegistryObjectOptions, RegistryObjectWriter } from '../../shared/core/ports.ts';
import { wrapSdkError } from './aws-errors.ts';

export interface S3RegistryObjectsOptions {
  bucket: string;
  client: S3Client;
}

/** S3 user metadata is sent as HTTP headers: names and values must be plain printable ASCII. */
const METADATA_NAME = /^[a-z0-9-]{1,64}$/;
const METADATA_VALUE = /^[\x20-\x7e]{0,1024}$/;

export class S3RegistryObjects implements RegistryObjectWriter {
  readonly #bucket: string;
  readonly #client: S3Client;

  constructor(options: S3RegistryObjectsOptions) {
    this.#bucket = options.bucket;
    this.#client = options.client;
  }

  async write(
    key: string,
    source: { bytes: Uint8Array } | { copyFrom: string },
    options: RegistryObjectOptions,
  ): Promise<void> {
    validateObjectKey(key);
    for (const [name, value] of Object.entries(options.metadata)) {
      if (!METADATA_NAME.test(name) || !METADATA_VALUE.test(value)) {
        throw new WasmMirrorError('INVALID_KEY', `metadata ${name} of ${key} is not plain ASCII`);
      }
    }
    const common = {
      Bucket: this.#bucket,
      Key: key,
      ContentType: options.contentType,
      CacheControl: options.cacheControl,
      Metadata: { ...options.metadata },
    };
    try {
      if ('bytes' in source) {
        await this.#client.send(
          new PutObjectCommand({ ...common, Body: source.bytes, ContentLength: source.bytes.byteLength }),
        );
        return;
      }
      validateObjectKey(source.copyFrom);
      await this.#client.send(
        new CopyObjectCommand({
          ...common,
          CopySource: `${this.#bucket}/${source.copyFrom.split('/').map(encodeURIComponent).join('/')}`,
          // The copy gets this object's headers, not the kept blob's.
          MetadataDirective: 'REPLACE',
        }),
      );
    } catch (err) {
      if (err instanceof WasmMirrorError) throw err;
      throw wrapSdkError('STORAGE_FAILURE', `S3 write ${key}`, err, { key });
    }
  }
}
