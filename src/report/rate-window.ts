/** How far back the rate looks. */
export const RATE_WINDOW_MS = 60_000;
/** A rate needs samples spread over at least this long; before that it is unknown. */
const MIN_SPAN_MS = 2_000;
/** At most one kept sample per this long (the wait loop may look many times a second). */
const SAMPLE_EVERY_MS = 1_000;

/**
 * Items per second over the last minute, moving: the speed now, not the average since the start.
 * Fed a cumulative count of items finished (never those done before the first sample: a resumed
 * run's rows done earlier are the baseline, not speed). Unknown (undefined) until two seconds of
 * samples, never NaN or Infinity.
 */
export class RateWindow {
  readonly #windowMs: number;
  #samples: Array<{ t: number; n: number }> = [];
  #current: { t: number; n: number } | undefined;

  constructor(windowMs = RATE_WINDOW_MS) {
    this.#windowMs = windowMs;
  }

  add(t: number, n: number): void {
    const last = this.#samples[this.#samples.length - 1];
    if (!last || t - last.t >= SAMPLE_EVERY_MS) this.#samples.push({ t, n });
    this.#current = { t, n };
    // Keep one sample at or before the window's start, so the rate spans the whole window.
    while (this.#samples.length > 2 && this.#samples[1]!.t <= t - this.#windowMs) this.#samples.shift();
  }

  /** Items per second, or undefined while not known. */
  perSecond(): number | undefined {
    const first = this.#samples[0];
    const now = this.#current;
    if (!first || !now) return undefined;
    const span = now.t - first.t;
    if (span < MIN_SPAN_MS) return undefined;
    const rate = (now.n - first.n) / (span / 1000);
    return Number.isFinite(rate) ? Math.max(0, rate) : undefined;
  }
}

/** Longer than this is no estimate (a trickle of a row an hour): said as unknown. */
const LONGEST_ETA_S = 366 * 86_400;

/** Seconds left at `perSecond`, or undefined when that cannot be said (no rate, or hardly any). */
export function etaSeconds(remaining: number, perSecond: number | undefined): number | undefined {
  if (remaining <= 0) return 0;
  if (perSecond === undefined || !(perSecond > 0)) return undefined;
  // Rounded up: "0 s" while rows remain would be a promise the run cannot keep.
  const eta = Math.ceil(remaining / perSecond);
  return Number.isFinite(eta) && eta <= LONGEST_ETA_S ? eta : undefined;
}

/** `45 s`, `12 min 5 s`, `3 h 20 min`, `2 d 4 h`; `unknown` when not known. */
export function formatEta(seconds: number | undefined): string {
  if (seconds === undefined) return 'unknown';
  if (seconds < 60) return `${seconds} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${seconds % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}
