import type { Logger } from '../log.ts';
import type { Clock } from '../pacing/clock.ts';

/** No 429 for this long after the last one: the API is taken to have recovered. */
export const THROTTLE_QUIET_MS = 30_000;

/**
 * What the operator hears about throttling: one info line when the API starts asking to slow
 * down, one when it has stopped asking (THROTTLE_QUIET_MS without a 429), and debug lines in
 * between. A server answering 429 to 7 % of requests made one info line per 429 (130 in a
 * 1,000-row import) that said nothing new after the first.
 */
export class ThrottleEpisodes {
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #quietMs: number;
  #since: number | undefined;
  #last = 0;
  #count = 0;

  constructor(clock: Clock, log: Logger, quietMs = THROTTLE_QUIET_MS) {
    this.#clock = clock;
    this.#log = log;
    this.#quietMs = quietMs;
  }

  /** A 429 (or a Retry-After) arrived and paused new requests for `pauseMs`. */
  throttled(request: { method: string; path: string; status: number }, pauseMs: number): void {
    const now = this.#clock.now();
    if (this.#since === undefined) {
      this.#since = now;
      this.#count = 0;
      this.#log.info({ ...request, pauseMs }, `the API asks to slow down (${request.status}): pausing new requests for ${pauseMs} ms, and again whenever it asks`);
    } else {
      this.#log.debug({ ...request, pauseMs }, 'the API asks to slow down again');
    }
    this.#count++;
    this.#last = now;
  }

  /** A request succeeded: ends the episode once the API has not asked for a while. */
  answered(): void {
    if (this.#since === undefined) return;
    const now = this.#clock.now();
    if (now - this.#last < this.#quietMs) return;
    this.#log.info({ throttledAnswers: this.#count, seconds: Math.round((this.#last - this.#since) / 1000) }, 'the API no longer asks to slow down: back to full pace');
    this.#since = undefined;
  }
}
