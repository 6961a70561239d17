import type { Clock } from './clock.ts';

/**
 * `--concurrency auto`: how many requests this process keeps in flight, learnt from the API's
 * answers. Loss-based AIMD (TCP Reno; AIMDLimit of Netflix's concurrency-limits) with two
 * additions that keep it from sawing into the server's limit every few round trips: it remembers
 * the level where the server refused (the ceiling) and only probes past it after a run of clean
 * rounds, and it holds or backs off when latency rises (a delay signal in the style of TCP
 * Vegas), so a server that queues before it refuses is not pushed to the refusing point at all.
 * docs/api-client.md ("Adaptive concurrency") gives the reasoning and the figures.
 *
 * Pure: no timers, no I/O; time comes from the injected clock. The caller takes a permit before
 * it sends a request and gives it back with what the answer taught (RequestOutcome).
 */

/** What kind of "too much" the server said (classify.ts's overloadOf decides). */
export type OverloadReason = 'status' | 'timeout' | 'connection';

export type RequestOutcome =
  /** The server answered (any answer that is not an overload signal, 404 included); latency defaults to the time since the grant. */
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
  /** Where it starts (default min(4, max)). */
  initial?: number;
  clock: Clock;
}

export interface ConcurrencyLimitStats {
  limit: number;
  inFlight: number;
  waiting: number;
  /** The level where the server last refused (undefined before the first refusal and after a passed probe). */
  ceiling: number | undefined;
  /** Overload answers seen (every one, also those that did not cause a cut). */
  overloads: number;
  /** Times the limit was cut (at most one per round trip). */
  cuts: number;
  /** The latency of an unloaded request, the reference of the latency signal. */
  baselineMs: number | undefined;
}

export const LIMIT_TUNING = {
  initial: 4,
  /** An isolated overload: step back 10 % (and never above the last level known to be clean). */
  backoff: 0.9,
  /** Each further cut before a clean round steps back 10 % more (0.8, 0.7, …), at most this far. */
  repeatedBackoff: 0.5,
  /** Before any refusal: +25 % per clean round (at least +1), so 8 → 64 takes ~10 round trips. */
  growth: 1.25,
  /** Clean rounds held one below the ceiling before probing it again; doubles on each failed probe. */
  probeRounds: 16,
  maxProbeRounds: 256,
  /** Latency counts as "rising" when the round's fastest answer exceeds the baseline by more than this share… */
  latencyTolerance: 0.25,
  /** …and by more than this (scheduling jitter of a few ms on either end is not a server queue)… */
  latencySlackMs: 5,
  /** …and by more than this many times the usual spread of a round's answers (see #spread). */
  spreadTolerance: 2,
  spreadMinAnswers: 4,
  spreadSmoothing: 0.125,
  /** Rounds in a row with latency far above the baseline (twice the tolerance) before a cut. */
  farAboveRounds: 2,
  /** Rounds after which a baseline not seen again is measured afresh (one round at half the limit). */
  baselineRounds: 128,
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
  #roundFastest = Number.POSITIVE_INFINITY;
  #roundLatencySum = 0;
  #roundAnswers = 0;
  #roundSaturated = false;
  /** Cuts since the last clean round (0 = the last round was clean). */
  #cutsInARow = 0;
  /** The highest level whose round was clean and saturated since the last cut. */
  #lastGood: number | undefined;

  #ceiling: number | undefined;
  #probeRounds: number = LIMIT_TUNING.probeRounds;
  #heldRounds = 0;
  #probing = false;

  #baseline = Number.POSITIVE_INFINITY;
  /** How far a round's average answer usually lies above its fastest (smoothed): the noise floor of the latency signal. */
  #spread = 0;
  /** Rounds since an answer came within tolerance of the baseline. */
  #roundsAboveBaseline = 0;
  /** Rounds in a row far above the baseline. */
  #roundsFarAbove = 0;
  /** A round at half the limit that measures the baseline afresh (BBR's ProbeRTT)… */
  #measuring = false;
  /** …and the round after it, whose first answers still come from the drained server. */
  #settling = false;
  /** The last latency cut, taken back when the next round is no faster (the rise was not ours). */
  #latencyCut: { fastest: number; from: number; ceiling: number | undefined } | undefined;

  #overloads = 0;
  #cuts = 0;

  constructor(options: ConcurrencyLimitOptions) {
    if (!Number.isInteger(options.max) || options.max < 1) throw new RangeError(`the concurrency maximum must be a whole number >= 1, got ${options.max}`);
    this.#max = options.max;
    this.#clock = options.clock;
    this.#limit = Math.min(this.#max, Math.max(1, Math.floor(options.initial ?? LIMIT_TUNING.initial)));
  }

  /** Requests allowed in flight: a whole number in [1, max]. */
  limit(): number {
    return Math.max(1, Math.floor(this.#limit + 1e-9));
  }

  inFlight(): number {
    return this.#inFlight;
  }

  stats(): ConcurrencyLimitStats {
    return {
      limit: this.limit(),
      inFlight: this.#inFlight,
      waiting: this.#waiters.length,
      ceiling: this.#ceiling,
      overloads: this.#overloads,
      cuts: this.#cuts,
      baselineMs: Number.isFinite(this.#baseline) ? this.#baseline : undefined,
    };
  }

  /** Calls back on every change of limit(); returns the unsubscribe. */
  onChange(listener: (change: LimitChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A permit now, or undefined when the limit is reached (or others are already waiting). */
  tryAcquire(): Permit | undefined {
    if (this.#inFlight >= this.#admits() || this.#waiters.length > 0) {
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

  /** Permits handed out at most: the limit, or half of it during a baseline round. */
  #admits(): number {
    return this.#measuring ? Math.max(1, Math.floor(this.limit() / 2)) : this.limit();
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
    while (this.#waiters.length > 0 && this.#inFlight < this.#admits()) {
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
    // No news (our own abort, a local error): it neither ends a round nor counts as a clean answer.
    if (outcome.kind === 'ignore') return;
    const ms = Math.max(0, outcome.latencyMs ?? this.#clock.now() - grantedAt);
    if (ms < this.#baseline) this.#baseline = ms;
    if (ms < this.#roundFastest) this.#roundFastest = ms;
    this.#roundLatencySum += ms;
    this.#roundAnswers++;
    if (seq >= this.#roundStart) this.#roundDone++;
    // A round is one window of answers, a quarter of them to requests sent in it: a little over
    // one round trip, so that refusals of requests sent at the new level arrive before the
    // round can count as clean. A try of the ceiling, the round after a cut and a baseline
    // measurement wait for a whole window of answers to requests sent at the new level.
    const strict = this.#probing || this.#measuring || this.#cutsInARow > 0;
    const sentInRound = strict ? this.#admits() : Math.ceil(this.#admits() / 4);
    if (this.#roundDone >= sentInRound && this.#roundAnswers >= this.#admits()) this.#endRound();
  }

  #endRound(): void {
    const saturated = this.#roundSaturated;
    const fastest = this.#roundFastest;
    const answers = this.#roundAnswers;
    const mean = this.#roundLatencySum / Math.max(1, answers);
    this.#startRound();
    // A round's fastest of few answers lies above the baseline (a minimum of thousands) by chance
    // alone, by about this much: without it, jittery latency reads as a queue and a lower limit
    // (fewer answers per round) reads as a longer one, down to 1.
    if (answers >= LIMIT_TUNING.spreadMinAnswers) this.#spread += (mean - fastest - this.#spread) * LIMIT_TUNING.spreadSmoothing;
    if (this.#measuring) {
      // The fastest answer at half the load is what an unloaded request takes now: the old
      // baseline was a queue of our own making if this is lower, or the path got slower.
      this.#measuring = false;
      this.#settling = true;
      if (Number.isFinite(fastest)) this.#baseline = fastest;
      this.#roundsAboveBaseline = 0;
      return;
    }
    if (this.#settling) {
      this.#settling = false;
      return;
    }
    if (!Number.isFinite(fastest)) return;
    const cut = this.#latencyCut;
    this.#latencyCut = undefined;
    if (cut && fastest >= cut.fastest) {
      // Fewer requests and not a millisecond faster: the latency rose for everyone (a slower
      // path, a busy backend, larger documents), not because of our queue. Take the cut back.
      this.#baseline = fastest;
      this.#ceiling = cut.ceiling;
      this.#cutsInARow = Math.max(0, this.#cutsInARow - 1);
      return this.#set(cut.from, 'latency');
    }
    const tolerance = Math.max(this.#baseline * LIMIT_TUNING.latencyTolerance, LIMIT_TUNING.latencySlackMs, LIMIT_TUNING.spreadTolerance * this.#spread);
    const excess = fastest - this.#baseline;
    if (excess <= tolerance) this.#roundsAboveBaseline = 0;
    else if (++this.#roundsAboveBaseline >= LIMIT_TUNING.baselineRounds) {
      // Never near the baseline for many rounds: measure it again instead of trusting an old
      // minimum (a slower path, larger documents) or taking the queue we hold for the norm.
      this.#measuring = true;
      this.#roundsAboveBaseline = 0;
      return;
    }
    // Even the fastest answer of the round waited: the server queues. Far above twice in a row
    // (a pause of our own event loop delays one round's answers, a queue stays): back off;
    // a little above: hold, neither growing nor counting the round as clean.
    this.#roundsFarAbove = excess > 2 * tolerance ? this.#roundsFarAbove + 1 : 0;
    if (this.#roundsFarAbove >= LIMIT_TUNING.farAboveRounds) {
      this.#roundsFarAbove = 0;
      const before = { fastest, from: this.#limit, ceiling: this.#ceiling };
      this.#cut('latency');
      this.#latencyCut = before;
      return;
    }
    if (excess > tolerance) return;
    this.#cutsInARow = 0;
    if (!saturated) return; // the limit was not what held requests back: no news about a higher one
    const level = this.limit();
    if (this.#lastGood === undefined || level > this.#lastGood) this.#lastGood = level;
    if (this.#probing) {
      // A clean round at the ceiling: the server takes more than it did. Forget the ceiling.
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
    // Refused again before a clean round: each cut in a row goes 10 % further, down to halving.
    const factor = Math.max(LIMIT_TUNING.repeatedBackoff, LIMIT_TUNING.backoff - 0.1 * this.#cutsInARow);
    let next = this.#limit * factor;
    // Back to the last level that ran clean when that is lower: the step that overshot is undone.
    if (this.#lastGood !== undefined && this.#lastGood < level) next = Math.min(next, this.#lastGood);
    this.#ceiling = level;
    if (this.#probing) this.#probeRounds = Math.min(this.#probeRounds * 2, LIMIT_TUNING.maxProbeRounds);
    this.#probing = false;
    this.#heldRounds = 0;
    this.#lastGood = undefined;
    this.#cutsInARow++;
    this.#cuts++;
    this.#epoch++;
    this.#startRound();
    this.#set(next, reason);
  }

  #startRound(): void {
    this.#roundStart = this.#seq;
    this.#roundDone = 0;
    this.#roundFastest = Number.POSITIVE_INFINITY;
    this.#roundLatencySum = 0;
    this.#roundAnswers = 0;
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
