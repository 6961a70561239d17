import { ManualClock } from '../../src/pacing/clock.ts';
import { ConcurrencyLimit, type Permit } from '../../src/pacing/concurrency-limit.ts';

/**
 * A server in simulated time, for driving a ConcurrencyLimit without sockets or wall time: it
 * takes at most `capacity(now)` requests at once and refuses the rest (503), after the same
 * round trip as an answer when `refusalMs` says so; an admitted request takes `latency(admitted)`.
 * The client always has more work than the limit allows (a saturated worker).
 */
export interface ServerModel {
  capacity: (nowMs: number) => number;
  /** Time of an admitted request, given how many are admitted (itself included). */
  latency: (admitted: number, nowMs: number) => number;
  /** Time until a refusal reaches the client (default: the base latency, as a real round trip). */
  refusalMs?: number;
}

export interface Window {
  /** Start of the window, ms since the simulation began. */
  at: number;
  answered: number;
  refused: number;
  /** Limit at the end of the window. */
  limit: number;
  /** Most requests the server held admitted at once in the window. */
  maxAdmitted: number;
}

export interface Simulation {
  limiter: ConcurrencyLimit;
  clock: ManualClock;
  /** Runs for `ms` of simulated time; returns one entry per `windowMs`. */
  run(ms: number, windowMs?: number): Window[];
}

interface Event {
  at: number;
  seq: number;
  fire: () => void;
}

export function simulate(model: ServerModel, options: { max: number; initial?: number }): Simulation {
  const clock = new ManualClock(0);
  const limiter = new ConcurrencyLimit({ max: options.max, ...(options.initial ? { initial: options.initial } : {}), clock });
  const events: Event[] = [];
  let seq = 0;
  let admitted = 0;
  let window: Window = { at: 0, answered: 0, refused: 0, limit: limiter.limit(), maxAdmitted: 0 };

  const schedule = (at: number, fire: () => void) => {
    const e = { at, seq: seq++, fire };
    // Ordered by time, then by scheduling order: the same run gives the same trace.
    let i = events.length;
    while (i > 0 && (events[i - 1]!.at > at || (events[i - 1]!.at === at && events[i - 1]!.seq > e.seq))) i--;
    events.splice(i, 0, e);
  };

  const dispatch = (permit: Permit) => {
    const now = clock.now();
    if (admitted >= model.capacity(now)) {
      schedule(now + (model.refusalMs ?? model.latency(1, now)), () => {
        window.refused++;
        permit.release({ kind: 'overload', reason: 'status' });
      });
      return;
    }
    admitted++;
    window.maxAdmitted = Math.max(window.maxAdmitted, admitted);
    const ms = model.latency(admitted, now);
    schedule(now + ms, () => {
      admitted--;
      window.answered++;
      permit.release({ kind: 'answered', latencyMs: ms });
    });
  };

  return {
    limiter,
    clock,
    run(ms, windowMs = 100) {
      const start = clock.now();
      const end = start + ms;
      const windows: Window[] = [];
      window = { at: start, answered: 0, refused: 0, limit: limiter.limit(), maxAdmitted: admitted };
      for (;;) {
        for (let p = limiter.tryAcquire(); p; p = limiter.tryAcquire()) dispatch(p);
        const next = events[0];
        const t = next && next.at < end ? next.at : end;
        while (window.at + windowMs <= t) {
          window.limit = limiter.limit();
          windows.push(window);
          window = { at: window.at + windowMs, answered: 0, refused: 0, limit: limiter.limit(), maxAdmitted: admitted };
        }
        if (!next || next.at >= end) break;
        events.shift();
        clock.set(next.at);
        next.fire();
      }
      clock.set(end);
      return windows;
    },
  };
}

/** Totals over some windows. */
export function totals(windows: Window[]): { answered: number; refused: number; refusedShare: number } {
  const answered = windows.reduce((n, w) => n + w.answered, 0);
  const refused = windows.reduce((n, w) => n + w.refused, 0);
  return { answered, refused, refusedShare: refused / Math.max(1, answered + refused) };
}
