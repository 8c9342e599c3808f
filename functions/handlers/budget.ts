/**
 * How much of an invocation the work may use. Lambda ends a function at its timeout without
 * running another line, so whatever was in flight is lost and the whole batch comes back after a
 * visibility timeout. Handlers keep a reserve instead: outbound requests are cut at the deadline
 * (the reserve before the timeout), work not started by then is handed back to the queue, and the
 * reserve is left to report that and flush metrics.
 */
import type { Context } from 'aws-lambda';
import { WasmMirrorError } from '../../shared/core/errors.ts';

export interface InvocationBudget {
  /** Milliseconds until the deadline; zero or less once it has passed. */
  left(): number;
  /**
   * A signal that aborts at the deadline with a retryable TIMEOUT naming `what`; `dispose` clears
   * its timer once the work is done.
   */
  deadline(what: string): { signal: AbortSignal; dispose(): void };
}

export function invocationBudget(
  context: Pick<Context, 'getRemainingTimeInMillis'>,
  reserveMs: number,
): InvocationBudget {
  const left = () => context.getRemainingTimeInMillis() - reserveMs;
  return {
    left,
    deadline(what) {
      const controller = new AbortController();
      const timeout = () =>
        new WasmMirrorError(
          'TIMEOUT',
          `${what} stopped ${Math.round(reserveMs / 1000)} s before the function's timeout`,
          { retryable: true },
        );
      const ms = left();
      if (ms <= 0) {
        controller.abort(timeout());
        return { signal: controller.signal, dispose() {} };
      }
      const timer = setTimeout(() => controller.abort(timeout()), ms);
      return { signal: controller.signal, dispose: () => clearTimeout(timer) };
    },
  };
}

/** The retryable failure of a record the invocation had no time left to start. */
export function notStarted(reserveMs: number): WasmMirrorError {
  return new WasmMirrorError(
    'TIMEOUT',
    `not started: less than the time a record needs was left before the function's ${Math.round(reserveMs / 1000)} s reserve`,
    { retryable: true },
  );
}
