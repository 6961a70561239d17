import type { ApiHealthSnapshot } from '../../api/api-health.ts';
import { formatDuration } from '../../config/duration.ts';
import type { Logger } from '../../log.ts';

/**
 * What the watch says about the API's health: a line when the API has failed every request for
 * `noticeMs` (one 503 of a flaky server is not an outage), a line when it answers again saying how
 * long it was down, and the outage's start and length for the heartbeat meanwhile.
 */
export class OutageNotice {
  readonly #noticeMs: number;
  readonly #log: Logger;
  /** What happens to files meanwhile, for the lines (`until 6h after their first failure …`). */
  readonly #meanwhile: string;
  #announced: number | undefined;

  constructor(noticeMs: number, log: Logger, meanwhile: string) {
    this.#noticeMs = noticeMs;
    this.#log = log;
    this.#meanwhile = meanwhile;
  }

  /** Looks at the API's health now; returns when the current outage began, or undefined when there is none to speak of. */
  check(health: ApiHealthSnapshot, now: number): number | undefined {
    const down = health.downSince !== undefined && now - health.downSince >= this.#noticeMs ? health.downSince : undefined;
    if (this.#announced !== undefined && health.downSince !== this.#announced) {
      const downForMs = (health.lastAnswerAt ?? now) - this.#announced;
      this.#log.info({ apiDownForMs: downForMs }, `watch: the API answers again after ${formatDuration(downForMs)} down`);
      this.#announced = undefined;
    }
    if (this.#announced === undefined && down !== undefined) {
      this.#announced = down;
      this.#log.warn(
        { apiDownSince: new Date(down).toISOString(), apiFailures: health.failures, lastFailure: health.lastFailure },
        `watch: the API is not answering (${health.lastFailure ?? 'failing'}) since ${new Date(down).toISOString()}; files wait and are tried again ${this.#meanwhile}`,
      );
    }
    return down;
  }

  /** The heartbeat's fields and message for an outage that began at `down`. */
  heartbeat(health: ApiHealthSnapshot, down: number, now: number): { fields: Record<string, unknown>; message: string } {
    const downForMs = now - down;
    return {
      fields: { apiDownSince: new Date(down).toISOString(), apiDownForMs: downForMs, apiFailures: health.failures, lastFailure: health.lastFailure },
      message: `watch heartbeat: the API has not answered for ${formatDuration(downForMs)} (since ${new Date(down).toISOString()}; ${health.failures} requests failed, the last ${health.lastFailure ?? 'unknown'}); files wait and are tried again ${this.#meanwhile}`,
    };
  }
}
