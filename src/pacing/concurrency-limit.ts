import type { Clock } from './clock.ts';

/**
 * `--concurrency auto`: how many requests this process keeps in flight, learnt from the API's
 * answers. Loss-based AIMD (TCP Reno, Netflix concurrency-limits' AIMDLimit) with two additions
 * that keep it from sawing into the server's limit every few round trips: it remembers the level
 * where the server refused (the ceiling) and only probes past it after a run of clean rounds,
 * and it holds or backs off when latency rises (a delay signal in the style of TCP Vegas), so a
 * server that queues before it refuses is not pushed to the refusing point at all.
 * docs/api-client.md ("Adaptive concurrency") gives the reasoning and the figures.
 *
 * Pure: no timers, no I/O; time comes from the injected clock. The caller takes a permit before
 * it sends a request and gives it back with what the answer taught (RequestOutcome).
 */

/** What kind of "too much" the server said (classify.ts's overloadOf decides). */
export type OverloadReason = 'status' | 'timeout' | 'connection';

export type RequestOutcome =
  /** The server answered (any answer that is not an overload signal, 404 included). */
  | { kind: 'answered'; latencyMs?: number }
  /** Refused or dropped for capacity: 503, 429, 504, a timeout, a reset or refused connection. */
  | { kind: 'overload'; reason: OverloadReason }
  /** Says nothing about the server's capacity: our own abort, a local file error, TLS. */
  | { kind: 'ignore' };

export interface Permit {
  /** Gives the slot back with what the request taught; later calls do nothing. */
  release(outcome: RequestOutcome): void;
}

export type LimitChangeReason = 'grow' | 'probe' | 'overload' | 'latency';

export interface LimitChange {
  from: number;
  to: number;
  reason: LimitChangeReason;
}

export interface ConcurrencyLimitOptions {
  /** --concurrency-max: never more requests in flight than this. */
  max: number;
  /** Where it starts (default min(8, max)). */
  initial?: number;
  clock: Clock;
}

export interface ConcurrencyLimitStats {
  limit: number;
  inFlight: number;
  waiting: number;
  /** The level where the server last refused (undefined before the first refusal or after a passed probe). */
  ceiling: number | undefined;
  /** Overload answers seen (every one, including those that did not cause a cut). */
  overloads: number;
  /** Times the limit was cut (at most one per round trip). */
  cuts: number;
  /** The lowest recent latency, the "no-load" reference of the latency signal. */
  baselineMs: number | undefined;
}

export const LIMIT_TUNING = {
  initial: 8,
  /** An isolated overload: step back 10 % (and never above the last level known to be clean). */
  backoff: 0.9,
  /** An overload in the round right after a cut: the cut was far from enough, halve. */
  repeatedBackoff: 0.5,
  /** Before any refusal: +25 % per clean round (at least +1), so 8 → 64 takes ~10 round trips. */
  growth: 1.25,
  /** Clean rounds held one below the ceiling before probing it again; doubles on each failed probe. */
  probeRounds: 16,
  maxProbeRounds: 256,
  /** Latency counts as "rising" when the round's fastest answer exceeds the baseline by more than this share… */
  latencyTolerance: 0.25,
  /** …and by more than this (scheduling jitter of a few ms on either end is not a server queue). */
  latencySlackMs: 5,
  /** The baseline is the minimum over the last 1-2 buckets of this many rounds, so it can follow a slower path. */
  baselineBucketRounds: 128,
} as const;

interface Waiter {
  resolve: (permit: Permit) => void;
  reject: (reason: unknown) => void;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class ConcurrencyLimit {
  readonly #max: number;
  readonly #clock: Clock;
  #limit: number;
  #inFlight = 0;
  #waiters: Waiter[] = [];
  readonly #listeners = new Set<(change: LimitChange) => void>();

  /** Sequence number of the next permit. */
  #seq = 0;
  /** Cuts so far; a permit remembers the epoch it was granted in, and only overloads of the current epoch cut. */
  #epoch = 0;
  /** Permits with seq >= this belong to the current round. */
  #roundStart = 0;
  #roundDone = 0;
  #roundMinMs = Number.POSITIVE_INFINITY;
  #roundSaturated = false;
  /** Cuts since the last clean round (0 = the last round was clean). */
  #cutsInARow = 0;
  /** The highest level whose round was clean and saturated since the last cut. */
  #lastGood: number | undefined;

  #ceiling: number | undefined;
  #probeRounds: number = LIMIT_TUNING.probeRounds;
  #heldRounds = 0;
  #probing = false;

  #bucketRounds = 0;
  #bucketMin = Number.POSITIVE_INFINITY;
  #previousBucketMin = Number.POSITIVE_INFINITY;

  #overloads = 0;
  #cuts = 0;

  constructor(options: ConcurrencyLimitOptions) {
    if (!Number.isInteger(options.max) || options.max < 1) throw new RangeError(`the concurrency maximum must be a whole number >= 1, got ${options.max}`);
    this.#max = options.max;
    this.#clock = options.clock;
    this.#limit = Math.min(this.#max, Math.max(1, Math.floor(options.initial ?? LIMIT_TUNING.initial)));
  }

  /** Requests allowed in flight now: a whole number in [1, max]. */
  limit(): number {
    return Math.max(1, Math.floor(this.#limit + 1e-9));
  }

  inFlight(): number {
    return this.#inFlight;
  }

  stats(): ConcurrencyLimitStats {
    const baseline = Math.min(this.#bucketMin, this.#previousBucketMin);
    return {
      limit: this.limit(),
      inFlight: this.#inFlight,
      waiting: this.#waiters.length,
      ceiling: this.#ceiling,
      overloads: this.#overloads,
      cuts: this.#cuts,
      baselineMs: Number.isFinite(baseline) ? baseline : undefined,
    };
  }

  /** Calls back on every change of limit(); returns the unsubscribe. */
  onChange(listener: (change: LimitChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A permit now, or undefined when the limit is reached. */
  tryAcquire(): Permit | undefined {
    if (this.#inFlight >= this.limit() || this.#waiters.length > 0) {
      this.#roundSaturated = true;
      return undefined;
    }
    return this.#grant();
  }

  /** Resolves with a permit once one is free (first come, first served); rejects when the signal aborts. */
  acquire(signal?: AbortSignal): Promise<Permit> {
    const now = this.tryAcquire();
    if (now) return Promise.resolve(now);
    return new Promise<Permit>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const waiter: Waiter = { resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => {
          this.#waiters = this.#waiters.filter((w) => w !== waiter);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#waiters.push(waiter);
    });
  }

  #grant(): Permit {
    this.#inFlight++;
    if (this.#inFlight >= this.limit()) this.#roundSaturated = true;
    const seq = this.#seq++;
    const epoch = this.#epoch;
    const grantedAt = this.#clock.now();
    let released = false;
    return {
      release: (outcome) => {
        if (released) return;
        released = true;
        this.#inFlight--;
        this.#learn(seq, epoch, grantedAt, outcome);
        this.#drain();
      },
    };
  }

  #drain(): void {
    while (this.#waiters.length > 0 && this.#inFlight < this.limit()) {
      const waiter = this.#waiters.shift()!;
      if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener('abort', waiter.onAbort);
      waiter.resolve(this.#grant());
    }
    if (this.#waiters.length > 0) this.#roundSaturated = true;
  }

  #learn(seq: number, epoch: number, grantedAt: number, outcome: RequestOutcome): void {
    if (outcome.kind === 'overload') {
      this.#overloads++;
      // Requests sent before the last cut were sent at the old level: their refusals are the
      // same news again, not a reason to cut twice (TCP's one reduction per window).
      if (epoch === this.#epoch) this.#cut('overload');
      return;
    }
    if (outcome.kind === 'answered') {
      const ms = Math.max(0, outcome.latencyMs ?? this.#clock.now() - grantedAt);
      if (ms < this.#roundMinMs) this.#roundMinMs = ms;
      if (ms < this.#bucketMin) this.#bucketMin = ms;
    }
    if (seq < this.#roundStart) return;
    this.#roundDone++;
    // A round is one round trip and at least one window of answers: enough answers to judge
    // the level they were sent at.
    if (this.#roundDone >= this.limit()) this.#endRound();
  }

  #endRound(): void {
    const saturated = this.#roundSaturated;
    const fastest = this.#roundMinMs;
    this.#startRound();
    if (++this.#bucketRounds >= LIMIT_TUNING.baselineBucketRounds) {
      this.#previousBucketMin = this.#bucketMin;
      this.#bucketMin = Number.POSITIVE_INFINITY;
      this.#bucketRounds = 0;
    }
    const baseline = Math.min(this.#bucketMin, this.#previousBucketMin, fastest);
    if (Number.isFinite(fastest) && Number.isFinite(baseline)) {
      const tolerance = Math.max(baseline * LIMIT_TUNING.latencyTolerance, LIMIT_TUNING.latencySlackMs);
      const excess = fastest - baseline;
      // Even the fastest answer of the round waited: the server queues. Far above: back off;
      // a little above: hold, neither growing nor counting the round as clean.
      if (excess > 2 * tolerance) return this.#cut('latency');
      if (excess > tolerance) return;
    }
    this.#cutsInARow = 0;
    if (!saturated) return; // the limit was not what held the requests back: no news about a higher one
    const level = this.limit();
    if (this.#lastGood === undefined || level > this.#lastGood) this.#lastGood = level;
    if (this.#probing) {
      // A clean round at or past the ceiling: the server takes more than it did. Forget the ceiling.
      this.#probing = false;
      this.#ceiling = undefined;
      this.#probeRounds = LIMIT_TUNING.probeRounds;
    }
    if (this.#ceiling === undefined) return this.#set(Math.max(this.#limit + 1, this.#limit * LIMIT_TUNING.growth), 'grow');
    if (level + 1 < this.#ceiling) return this.#set(Math.min(this.#limit + 1, this.#ceiling - 1), 'grow');
    if (++this.#heldRounds < this.#probeRounds) return;
    this.#heldRounds = 0;
    this.#probing = true;
    this.#set(Math.max(this.#ceiling, level + 1), 'probe');
  }

  #cut(reason: 'overload' | 'latency'): void {
    const level = this.limit();
    const factor = this.#cutsInARow > 0 ? LIMIT_TUNING.repeatedBackoff : LIMIT_TUNING.backoff;
    let next = this.#limit * factor;
    // Back to the last level that ran clean when that is lower (the step that overshot is undone).
    if (this.#lastGood !== undefined && this.#lastGood < level) next = Math.min(next, this.#lastGood);
    this.#ceiling = level;
    if (this.#probing) this.#probeRounds = Math.min(this.#probeRounds * 2, LIMIT_TUNING.maxProbeRounds);
    this.#probing = false;
    this.#heldRounds = 0;
    this.#cutsInARow++;
    this.#cuts++;
    this.#epoch++;
    this.#lastGood = undefined;
    this.#startRound();
    this.#set(next, reason);
  }

  #startRound(): void {
    this.#roundStart = this.#seq;
    this.#roundDone = 0;
    this.#roundMinMs = Number.POSITIVE_INFINITY;
    this.#roundSaturated = this.#waiters.length > 0;
  }

  #set(value: number, reason: LimitChangeReason): void {
    const from = this.limit();
    this.#limit = Math.min(this.#max, Math.max(1, value));
    const to = this.limit();
    if (to !== from) {
      for (const listener of this.#listeners) {
        try {
          listener({ from, to, reason });
        } catch {
          // A listener's failure must not break the request path that released the permit.
        }
      }
    }
    this.#drain();
  }
}
