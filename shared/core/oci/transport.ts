// Hand-written: no maintained JS OCI client exists, and pulls need streamed bodies and strict redirect rules.
/**
 * The HTTP layer under the registry client, like oras-go's retry transport: one exchange at a
 * time with header, idle-body and whole-request timeouts, redirects followed by hand (plain http
 * only for an insecure registry, `Authorization` never sent to another origin, every target
 * checked by the address guard), and a retry loop for throttling, outages and connection
 * failures inside a bounded total time.
 */
import { backoffDelay, parseRetryAfterMs, RetryBudget, sleep } from '../backoff.ts';
import { WasmMirrorError } from '../errors.ts';
import { type AddressGuard, defaultAddressGuard } from './address-guard.ts';

export interface RetryOptions {
  /** Attempts per request, the first included (default 4). */
  maxAttempts?: number;
  /** First backoff delay; doubles each attempt, with jitter (default 500 ms). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Total time a request may spend including waits; a longer Retry-After fails at once (default 60 s). */
  budgetMs?: number;
}

export interface TransportOptions {
  fetch?: typeof fetch;
  /** Time from sending a request to its response headers, redirects included (default 30 s). */
  headersTimeoutMs?: number;
  /** Longest wait for the next chunk of a body (default 30 s). */
  idleTimeoutMs?: number;
  /** Longest a single request may take, body included, so a trickling body cannot hang a pull (default 10 min). */
  requestTimeoutMs?: number;
  retry?: RetryOptions;
  /** Checks token realms and redirect targets before they are contacted (default: refuse link-local/metadata). */
  addressGuard?: AddressGuard;
  userAgent?: string;
  /** Clock in ms, for token expiry and the retry budget. */
  now?: () => number;
}

export interface SendOptions {
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT';
  headers?: Record<string, string>;
  /**
   * Request body (uploads). The response comes only after the upload, so its wait is bounded by
   * the whole-request timeout rather than the headers timeout.
   */
  body?: Uint8Array<ArrayBuffer>;
  signal: AbortSignal | undefined;
  /** Names the exchange in a timeout error. */
  label: string;
  /**
   * Follow redirects under the registry's rules (requests without a body only); without it a
   * redirect is returned as it came.
   */
  redirects?: { insecure: boolean };
}

/** A response and the attempt that owns its timers; `body` or `release` ends the attempt. */
export interface Exchange {
  res: Response;
  call: Call;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const RETRY_STATUS = new Set([429, 500, 502, 503, 504]);
const MAX_REDIRECTS = 5;

export class Transport {
  readonly guard: AddressGuard;
  readonly now: () => number;
  readonly #fetch: typeof fetch;
  readonly #headersTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  readonly #retry: Required<RetryOptions>;
  readonly #userAgent: string;

  constructor(options: TransportOptions = {}) {
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? 30_000;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 30_000;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? 600_000;
    this.#retry = {
      maxAttempts: 4,
      baseDelayMs: 500,
      maxDelayMs: 10_000,
      budgetMs: 60_000,
      ...options.retry,
    };
    this.guard = options.addressGuard ?? defaultAddressGuard;
    this.#userAgent = options.userAgent ?? 'wasm-mirror/0.1';
    this.now = options.now ?? Date.now;
  }

  /**
   * Runs `attempt` until it returns, throws something not retryable, or the attempts or the
   * time budget run out. Anything that is not a WasmMirrorError counts as a connection failure.
   */
  async retrying<T>(signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    const budget = new RetryBudget(this.#retry.budgetMs, this.now);
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        const e = err instanceof WasmMirrorError ? err : connectionFailure(err);
        if (!e.retryable || signal?.aborted) throw e;
        if (!(await this.#wait(n, budget, e.retryAfterSeconds, signal))) throw e;
      }
    }
  }

  /** One request up to its response headers; the caller owns the body through the returned call. */
  async send(url: URL, options: SendOptions): Promise<Exchange> {
    const call = new Call(options.signal, this.#requestTimeoutMs);
    const headers = { 'user-agent': this.#userAgent, ...options.headers };
    const method = options.method ?? 'GET';
    const { body } = options;
    try {
      if (body === undefined) call.arm(this.#headersTimeoutMs, options.label);
      call.target = url;
      const res =
        options.redirects === undefined || body !== undefined
          ? await this.#fetch(url, {
              method,
              headers,
              ...(body === undefined ? {} : { body }),
              redirect: 'manual',
              signal: call.signal,
            })
          : await this.#followRedirects(url, method, headers, call, options.redirects.insecure);
      call.disarm();
      return { res, call };
    } catch (err) {
      call.dispose();
      throw call.translate(err);
    }
  }

  /** The body's chunks, each read under the idle timeout; the call ends when the iteration does. */
  async *body(ex: Exchange, where?: () => string): AsyncGenerator<Uint8Array, void, undefined> {
    const { res, call } = ex;
    if (res.body === null) {
      call.dispose();
      return;
    }
    const reader = res.body.getReader();
    let done = false;
    try {
      for (;;) {
        call.arm(this.#idleTimeoutMs, 'reading the response body');
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          const e = call.translate(err);
          if (where !== undefined && e.code === 'REGISTRY_UNAVAILABLE') {
            throw new WasmMirrorError(e.code, `${e.message} ${where()}`, { cause: err, retryable: true });
          }
          throw e;
        }
        call.disarm();
        if (next.done) {
          done = true;
          return;
        }
        yield next.value;
      }
    } finally {
      call.dispose();
      if (!done) await reader.cancel().catch(() => {});
    }
  }

  async #followRedirects(
    start: URL,
    method: string,
    headers: Record<string, string>,
    call: Call,
    insecure: boolean,
  ): Promise<Response> {
    let url = start;
    let verb: string = method;
    for (let hop = 0; ; hop++) {
      call.target = url;
      const res = await this.#fetch(url, { method: verb, headers, redirect: 'manual', signal: call.signal });
      if (!REDIRECTS.has(res.status)) return res;
      const location = res.headers.get('location');
      await cancelBody(res);
      if (hop >= MAX_REDIRECTS)
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `more than ${MAX_REDIRECTS} redirects`);
      if (location === null)
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `redirect ${res.status} without Location`);
      const next = new URL(location, url);
      if (next.protocol !== 'https:' && next.protocol !== 'http:') {
        throw new WasmMirrorError('REGISTRY_PROTOCOL', `redirect to unsupported scheme ${next.protocol}`);
      }
      if (next.protocol === 'http:' && !insecure) {
        throw new WasmMirrorError(
          'INSECURE_NOT_ALLOWED',
          `redirect to plain http (${next.host}) for a TLS registry`,
        );
      }
      // Credentials are for the registry only: a CDN or storage host must not see them.
      if (next.origin !== start.origin) delete headers.authorization;
      await this.guard(next);
      if (res.status === 303) verb = 'GET';
      url = next;
    }
  }

  /** Waits before retry `attempt`; false when no retry is left or the wait would overrun the budget. */
  async #wait(
    attempt: number,
    budget: RetryBudget,
    retryAfterSeconds: number | undefined,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    if (attempt >= this.#retry.maxAttempts) return false;
    const retryAfterMs = retryAfterSeconds === undefined ? undefined : retryAfterSeconds * 1000;
    // A server's Retry-After is waited out in full: the budget bounds it, not the backoff cap.
    const policy = {
      baseMs: this.#retry.baseDelayMs,
      maxMs: Math.max(this.#retry.maxDelayMs, retryAfterMs ?? 0),
    };
    const delay = backoffDelay(policy, attempt, { retryAfterMs });
    if (!budget.allows(delay)) return false;
    await sleep(delay, signal);
    return signal?.aborted !== true;
  }
}

/**
 * The retryable error for a throttled (429) or failing (5xx) response, carrying its Retry-After;
 * undefined for any other status.
 */
export function retryableStatusError(
  res: Response,
  message: string,
  now: number,
): WasmMirrorError | undefined {
  if (!RETRY_STATUS.has(res.status)) return undefined;
  const retryAfterMs = parseRetryAfterMs(res.headers.get('retry-after'), now);
  return new WasmMirrorError(res.status === 429 ? 'TOO_MANY_REQUESTS' : 'REGISTRY_UNAVAILABLE', message, {
    retryable: true,
    ...(retryAfterMs === undefined ? {} : { retryAfterSeconds: Math.ceil(retryAfterMs / 1000) }),
  });
}

/** Ends an exchange whose body is not wanted. */
export async function release(ex: Exchange): Promise<void> {
  ex.call.dispose();
  await cancelBody(ex.res);
}

export function contentLength(res: Response): number | undefined {
  const value = res.headers.get('content-length');
  if (value === null || !/^\d+$/.test(value)) return undefined;
  return Number(value);
}

async function cancelBody(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

/** What a failed connection to `target` means, and what to do about it where it is known. */
function connectionFailure(err: unknown, target?: URL): WasmMirrorError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const code = cause?.code;
  const detail = code ?? cause?.message ?? (err instanceof Error ? err.message : String(err));
  if (target === undefined) {
    return new WasmMirrorError('REGISTRY_UNAVAILABLE', `connection failed (${detail})`, {
      cause: err,
      retryable: true,
    });
  }
  const hostPort = `${target.hostname}:${target.port || (target.protocol === 'https:' ? '443' : '80')}`;
  // A TLS hello answered by an http server: no retry will change that, so fail at once.
  if (target.protocol === 'https:' && code === 'ERR_SSL_WRONG_VERSION_NUMBER') {
    return new WasmMirrorError(
      'REGISTRY_UNAVAILABLE',
      `${hostPort} answered an https request in plain http (${code}): for a registry that serves plain http, pass --plain-http (or set insecure: true on its source in the config)`,
      { cause: err },
    );
  }
  if (code === 'ECONNREFUSED') {
    return new WasmMirrorError(
      'REGISTRY_UNAVAILABLE',
      `cannot connect to ${hostPort}: connection refused (${code}); is the registry running and listening there?`,
      { cause: err, retryable: true },
    );
  }
  return new WasmMirrorError('REGISTRY_UNAVAILABLE', `connection to ${hostPort} failed (${detail})`, {
    cause: err,
    retryable: true,
  });
}

/**
 * One attempt's abort controller: the caller's signal, a whole-request deadline, and a timer for
 * the headers or the next body chunk.
 */
export class Call {
  readonly #controller = new AbortController();
  /** The URL being fetched, so a connection failure can name its host and port. */
  target: URL | undefined;
  readonly #outer: AbortSignal | undefined;
  readonly #onAbort = () => this.#controller.abort(this.#outer?.reason);
  readonly #deadline: ReturnType<typeof setTimeout>;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(outer: AbortSignal | undefined, totalMs: number) {
    this.#outer = outer;
    if (outer?.aborted) this.#controller.abort(outer.reason);
    else outer?.addEventListener('abort', this.#onAbort, { once: true });
    this.#deadline = setTimeout(
      () =>
        this.#controller.abort(
          new WasmMirrorError('TIMEOUT', `request took longer than ${totalMs} ms`, { retryable: true }),
        ),
      totalMs,
    );
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  arm(ms: number, what: string): void {
    this.disarm();
    this.#timer = setTimeout(
      () =>
        this.#controller.abort(
          new WasmMirrorError('TIMEOUT', `${what} timed out after ${ms} ms`, { retryable: true }),
        ),
      ms,
    );
  }

  disarm(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  dispose(): void {
    this.disarm();
    clearTimeout(this.#deadline);
    this.#outer?.removeEventListener('abort', this.#onAbort);
  }

  /** Maps whatever fetch or a body read threw into the error the caller sees. */
  translate(err: unknown): WasmMirrorError {
    if (err instanceof WasmMirrorError) return err;
    if (this.#controller.signal.aborted) {
      const reason: unknown = this.#controller.signal.reason;
      if (reason instanceof WasmMirrorError) return reason;
      return new WasmMirrorError('TIMEOUT', 'operation aborted', { cause: reason });
    }
    return connectionFailure(err, this.target);
  }
}
