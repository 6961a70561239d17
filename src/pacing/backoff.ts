import type { Classification } from '../errors.ts';

/**
 * Pure retry-delay maths (after got's calculateRetryDelay): a function of the attempt number,
 * the classification of the failure and a random source; 0 means "do not retry". The code
 * that actually waits lives elsewhere (BullMQ's backoff at the job level, AdaptivePace).
 */
export interface BackoffOptions {
  /** First delay ceiling, ms. */
  baseMs?: number;
  /** Largest exponential delay, ms. */
  capMs?: number;
  /** Largest Retry-After that is honoured as given, ms; longer ones are cut to this. */
  retryAfterCapMs?: number;
}

export const BACKOFF_DEFAULTS = { baseMs: 500, capMs: 60_000, retryAfterCapMs: 300_000 } as const;

/**
 * @param attempt 1 for the delay after the first failed attempt, 2 after the second, …
 * @param random returns a number in [0, 1) (Math.random in production, a constant in tests)
 * @returns milliseconds to wait before the next attempt; 0 = do not retry
 */
export function retryDelay(attempt: number, classification: Classification, random: () => number, options: BackoffOptions = {}): number {
  const baseMs = options.baseMs ?? BACKOFF_DEFAULTS.baseMs;
  const capMs = options.capMs ?? BACKOFF_DEFAULTS.capMs;
  const retryAfterCapMs = options.retryAfterCapMs ?? BACKOFF_DEFAULTS.retryAfterCapMs;
  switch (classification.kind) {
    case 'permanent':
    case 'fatal':
      return 0;
    case 'retry-after': {
      // The server named the time: wait at least that long, plus a little spread (≤10%, ≤1 s)
      // so that many workers released by the same Retry-After do not return in one burst.
      const wait = Math.min(Math.max(0, classification.ms), retryAfterCapMs);
      return Math.max(1, Math.round(wait + random() * Math.min(1000, wait * 0.1)));
    }
    case 'retry':
    case 'refresh-auth': {
      // Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in
      // [0, min(cap, base·2^(attempt-1))]; never 0 because 0 means "do not retry".
      const n = Math.max(1, Math.floor(attempt));
      const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(n - 1, 30));
      return Math.max(1, Math.round(random() * ceiling));
    }
  }
}
