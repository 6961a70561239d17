import type { Clock } from './clock.ts';

/**
 * Spaces request starts evenly so that no one-second window holds more than `perSecond`
 * of them (a token bucket would allow a burst of N at a window's end and N more at the next
 * one's start). The 5 % margin absorbs scheduling jitter between here and the server's clock.
 * This is the per-process guarantee; BullMQ's global limiter spreads the same rate across
 * worker processes.
 */
export class RequestSpacer {
  readonly #intervalMs: number;
  readonly #clock: Clock;
  #next = 0;

  constructor(perSecond: number, clock: Clock) {
    if (!(perSecond > 0)) throw new RangeError(`rate must be positive, got ${perSecond}`);
    this.#intervalMs = (1000 / perSecond) * 1.05;
    this.#clock = clock;
  }

  /** Resolves when the caller may start its request; slots are handed out in call order. */
  async wait(signal?: AbortSignal): Promise<void> {
    const now = this.#clock.now();
    const at = Math.max(now, this.#next);
    this.#next = at + this.#intervalMs;
    if (at > now) await this.#clock.sleep(at - now, signal);
  }
}
