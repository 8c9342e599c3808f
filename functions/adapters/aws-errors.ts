/**
 * Translating AWS SDK failures into the core's error codes: adapters call these, so the core
 * never sees an SDK exception type.
 */
import { type ErrorCode, WasmMirrorError } from '../../shared/core/errors.ts';

interface SdkErrorLike {
  name?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: unknown;
}

export function sdkStatus(err: unknown): number | undefined {
  return (err as SdkErrorLike | undefined)?.$metadata?.httpStatusCode;
}

export function sdkName(err: unknown): string | undefined {
  const name = (err as SdkErrorLike | undefined)?.name;
  return typeof name === 'string' ? name : undefined;
}

export function isNotFound(err: unknown): boolean {
  const name = sdkName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || sdkStatus(err) === 404;
}

/** Throttling, 5xx and network failures are worth retrying; 4xx caller mistakes are not. */
export function isRetryableSdkError(err: unknown): boolean {
  const status = sdkStatus(err);
  if ((err as SdkErrorLike | undefined)?.$retryable) return true;
  if (status === undefined) return true;
  return status === 429 || status >= 500;
}

export function wrapSdkError(
  code: ErrorCode,
  action: string,
  err: unknown,
  details?: Record<string, unknown>,
): WasmMirrorError {
  if (err instanceof WasmMirrorError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new WasmMirrorError(code, `${action}: ${message}`, {
    cause: err,
    retryable: isRetryableSdkError(err),
    details: { ...details, awsError: sdkName(err), httpStatus: sdkStatus(err) },
  });
}
