/**
 * Time as a dependency: production code reads and waits through a Clock so that tests can
 * move time by hand instead of sleeping (docs/architecture.md, "Habits").
 */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms, signal) {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const onAbort = () => {
        clearTimeout(timer);
        reject(abortReason(signal!));
      };
      // unref: a pending pause must never keep the process alive on its own.
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, Math.max(0, ms));
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};

interface Sleeper {
  at: number;
  resolve: () => void;
}

/** A clock that only moves when a test calls `advance()` or `set()`. */
export class ManualClock implements Clock {
  #now: number;
  #sleepers: Sleeper[] = [];
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(abortReason(signal));
      const sleeper: Sleeper = { at: this.#now + Math.max(0, ms), resolve };
      if (ms <= 0) return resolve();
      this.#sleepers.push(sleeper);
      signal?.addEventListener(
        'abort',
        () => {
          this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
          reject(abortReason(signal));
        },
        { once: true },
      );
    });
  }
  /** Number of sleeps not yet due. */
  get pending(): number {
    return this.#sleepers.length;
  }
  advance(ms: number): void {
    this.set(this.#now + ms);
  }
  set(now: number): void {
    this.#now = now;
    const due = this.#sleepers.filter((s) => s.at <= now);
    this.#sleepers = this.#sleepers.filter((s) => s.at > now);
    for (const s of due) s.resolve();
  }
}
