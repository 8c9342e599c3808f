/**
 * The queue's timers, behind a scheduler so tests can move time on instead of waiting for it.
 */

export interface Scheduler {
  /** Calls `callback` once, `ms` from now; the returned function cancels it. */
  after(ms: number, callback: () => void): () => void;
}

export const systemScheduler: Scheduler = {
  after(ms, callback) {
    const timer = setTimeout(callback, ms);
    return () => clearTimeout(timer);
  },
};

export function delay(scheduler: Scheduler, ms: number): Promise<void> {
  return new Promise((resolve) => {
    scheduler.after(ms, resolve);
  });
}

/**
 * How a consumer loop waits: until something in this process wakes it (a send, a redrive, a
 * finished handler) or the poll interval passes, whichever is first. A wake while the loop is busy
 * is remembered, so the next wait returns at once and nothing sent meanwhile waits for a poll.
 */
export class Waker {
  private wake: (() => void) | undefined;
  private woken = false;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly pollIntervalMs: number,
  ) {}

  notify(): void {
    if (this.wake !== undefined) this.wake();
    else this.woken = true;
  }

  sleep(): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const wake = () => {
        cancel();
        if (this.wake === wake) this.wake = undefined;
        resolve();
      };
      const cancel = this.scheduler.after(this.pollIntervalMs, wake);
      this.wake = wake;
    });
  }
}
