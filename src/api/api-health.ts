import { errorCode, HttpStatusError, NetworkError, TimeoutError } from '../errors.ts';
import { isOutage } from './classify.ts';

/** What a process knows of the API's health from its own requests. */
export interface ApiHealthSnapshot {
  /** When the API last answered a request (any answer that is not an outage). */
  lastAnswerAt?: number;
  /** When the current run of outage failures began; undefined while the API answers. */
  downSince?: number;
  /** Requests that failed as an outage since the last answer. */
  failures: number;
  /** The last of those failures, short: `E_HTTP_STATUS 503`, `E_NETWORK ECONNREFUSED`, … */
  lastFailure?: string;
}

/**
 * The API's health as this process's requests found it: up while it answers, down from the first
 * request that met an outage (no connection, no answer in time, a 5xx or 408) until the next
 * answer. A 4xx is an answer: the server is there, it said no. What the watch's heartbeat reports.
 */
export class ApiHealth {
  #lastAnswerAt: number | undefined;
  #downSince: number | undefined;
  #failures = 0;
  #lastFailure: string | undefined;

  answered(now: number): void {
    this.#lastAnswerAt = now;
    this.#downSince = undefined;
    this.#failures = 0;
    this.#lastFailure = undefined;
  }

  /** A request failed: an outage counts as down, any other HTTP answer (a 404, a 429) as an answer; anything else (an abort of our own) tells nothing. */
  failed(err: unknown, now: number): void {
    if (!isOutage(err)) {
      if (err instanceof HttpStatusError) this.answered(now);
      return;
    }
    this.#downSince ??= now;
    this.#failures++;
    const detail = err instanceof HttpStatusError ? String(err.status) : err instanceof NetworkError ? err.sysCode : err instanceof TimeoutError ? err.phase : undefined;
    this.#lastFailure = detail ? `${errorCode(err)} ${detail}` : errorCode(err);
  }

  snapshot(): ApiHealthSnapshot {
    return {
      ...(this.#lastAnswerAt !== undefined ? { lastAnswerAt: this.#lastAnswerAt } : {}),
      ...(this.#downSince !== undefined ? { downSince: this.#downSince } : {}),
      failures: this.#failures,
      ...(this.#lastFailure !== undefined ? { lastFailure: this.#lastFailure } : {}),
    };
  }
}
