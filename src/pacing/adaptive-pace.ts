import type { Clock } from './clock.ts';

export type ThrottleListener = (untilMs: number, waitMs: number) => void;

/**
 * A process-wide pause: when the API says "slow down" (429/503 with Retry-After), no new
 * request starts before the time it named; requests already in flight finish normally.
 * The processor also rate-limits the job's BullMQ worker when a job is throttled; onThrottle()
 * tells listeners (the metrics) of each pause.
 */
export class AdaptivePace {
  readonly #clock: Clock;
  readonly #maxPauseMs: number;
  #until = 0;
  readonly #listeners = new Set<ThrottleListener>();

  constructor(clock: Clock, options: { maxPauseMs?: number } = {}) {
    this.#clock = clock;
    this.#maxPauseMs = options.maxPauseMs ?? 300_000;
  }

  /** Epoch ms before which no new request should start (in the past when there is no pause). */
  until(): number {
    return this.#until;
  }

  /** Milliseconds left in the current pause (0 when none). */
  remaining(): number {
    return Math.max(0, this.#until - this.#clock.now());
  }

  /** Pauses new requests for `ms` (capped); a shorter pause never cuts a longer one short. */
  throttle(ms: number): void {
    const waitMs = Math.min(Math.max(0, ms), this.#maxPauseMs);
    const until = this.#clock.now() + waitMs;
    if (until <= this.#until) return;
    this.#until = until;
    for (const listener of this.#listeners) {
      try {
        listener(until, waitMs);
      } catch {
        // A listener's failure must not break the request path that reported the throttle.
      }
    }
  }

  onThrottle(listener: ThrottleListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves once no pause is in force (re-checks: the pause may be extended meanwhile). */
  async wait(signal?: AbortSignal): Promise<void> {
    for (let left = this.remaining(); left > 0; left = this.remaining()) {
      await this.#clock.sleep(left, signal);
    }
  }
}
