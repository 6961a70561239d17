import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/pacing/clock.ts';
import { ConcurrencyLimit, type LimitChange, type Permit } from '../../src/pacing/concurrency-limit.ts';
import { mulberry32 } from '../../src/sandbox/seeded-random.ts';
import { simulate, totals, type Window } from '../helpers/capacity-model.ts';

const RTT = 20;
const flat = () => RTT;
const bound = (capacity: number, ms: number) => (capacity * ms) / RTT;
const limits = (windows: Window[]) => windows.map((w) => w.limit);
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
/** Just after a failed probe the limit is 10 % below the capacity for a round or two. */
const nearFloor = (capacity: number) => Math.max(1, Math.floor(0.85 * capacity));

describe('ConcurrencyLimit against a simulated server (simulated time)', () => {
  it('shrinks to a capacity limit and grows again when the limit lifts', () => {
    let capacity = 32;
    const sim = simulate({ capacity: () => capacity, latency: flat }, { max: 64 });

    const open = sim.run(10_000, 500);
    expect(open.at(-1)!.limit).toBeGreaterThanOrEqual(nearFloor(32));
    expect(open.at(-1)!.limit).toBeLessThanOrEqual(33);

    capacity = 8;
    const squeezed = sim.run(10_000, 500);
    // Within the first half second the limit is at the new capacity, and it stays there.
    for (const w of squeezed) expect(w.limit).toBeLessThanOrEqual(9);
    for (const w of squeezed.slice(1)) expect(w.limit).toBeGreaterThanOrEqual(7);
    const afterDrop = totals(squeezed.slice(1));
    expect(afterDrop.refusedShare).toBeLessThan(0.01);
    expect(afterDrop.answered).toBeGreaterThan(0.95 * bound(8, 9_500));

    capacity = 32;
    const lifted = sim.run(20_000, 500);
    expect(lifted.at(-1)!.limit).toBeGreaterThanOrEqual(nearFloor(32));
    const lastHalf = totals(lifted.slice(20));
    expect(lastHalf.answered).toBeGreaterThan(0.95 * bound(32, 10_000));
    expect(lastHalf.refusedShare).toBeLessThan(0.01);
  });

  it.each([1, 2, 4, 8, 16, 32])('converges near a capacity of %i with few refusals, whether a refusal comes at once or after a round trip', (capacity) => {
    for (const refusalMs of [0, RTT]) {
      const sim = simulate({ capacity: () => capacity, latency: flat, refusalMs }, { max: 64 });
      const windows = sim.run(30_000, 1000);
      // Starting at 4 above a capacity of 1, the first second costs a few refusals; not many after it.
      expect(windows[0]!.refused).toBeLessThanOrEqual(20);
      const settled = windows.slice(2);
      for (const l of limits(settled)) {
        expect(l).toBeGreaterThanOrEqual(nearFloor(capacity));
        expect(l).toBeLessThanOrEqual(capacity + 1);
      }
      expect(mean(limits(settled))).toBeGreaterThanOrEqual(capacity - 1);
      const t = totals(settled);
      expect(t.refusedShare).toBeLessThan(0.01);
      expect(t.answered).toBeGreaterThan(0.95 * bound(capacity, 28_000));
    }
  });

  it('holds below the point where latency climbs, without a single refusal, on a server that queues before it refuses', () => {
    // 16 requests in parallel at 20 ms; each one more adds 2 ms, so throughput falls past 16.
    const sim = simulate({ capacity: () => 64, latency: (admitted) => RTT + 2 * Math.max(0, admitted - 16) }, { max: 64 });
    const windows = sim.run(30_000, 1000);
    expect(totals(windows).refused).toBe(0);
    // It stays where it stopped: no creeping up as the latency it holds becomes the norm.
    for (const l of limits(windows.slice(1))) {
      expect(l).toBeGreaterThanOrEqual(16);
      expect(l).toBeLessThanOrEqual(21);
    }
    expect(new Set(limits(windows.slice(5))).size).toBe(1);
  });

  it.each([10, 40, 100])('is not fooled by latency jitter of %i ms: it still finds the capacity', (jitter) => {
    const random = mulberry32(7);
    for (const capacity of [8, 32]) {
      const sim = simulate({ capacity: () => capacity, latency: () => RTT + random() * jitter }, { max: 64 });
      const windows = sim.run(30_000, 1000);
      for (const l of limits(windows.slice(2))) expect(l).toBeGreaterThanOrEqual(nearFloor(capacity));
      expect(mean(limits(windows.slice(2)))).toBeGreaterThanOrEqual(capacity - 1);
      expect(totals(windows).refusedShare).toBeLessThan(0.01);
    }
  });

  it('does not take a latency rise that is the same for every load for a queue of its own (a slower path)', () => {
    const sim = simulate({ capacity: () => 32, latency: (_admitted, now) => (now < 5_000 ? RTT : 5 * RTT) }, { max: 64 });
    sim.run(5_000);
    const slower = sim.run(10_000, 500);
    for (const l of limits(slower)) expect(l).toBeGreaterThanOrEqual(nearFloor(32));
    expect(sim.limiter.stats().baselineMs).toBe(5 * RTT);
    expect(totals(slower).answered).toBeGreaterThan(0.95 * ((32 * 10_000) / (5 * RTT)));
  });

  it('stays steady: at a constant capacity the limit changes a few times a second at most, by one', () => {
    const sim = simulate({ capacity: () => 8, latency: flat }, { max: 64 });
    sim.run(5_000);
    const changes: LimitChange[] = [];
    sim.limiter.onChange((c) => changes.push(c));
    sim.run(30_000);
    expect(changes.length).toBeLessThan(30 * 2);
    for (const c of changes) expect(Math.abs(c.to - c.from)).toBeLessThanOrEqual(1);
  });

  it('never goes below 1, even when every request is refused, and recovers', () => {
    let capacity = 0;
    const sim = simulate({ capacity: () => capacity, latency: flat }, { max: 64, initial: 8 });
    const refused = sim.run(5_000, 100);
    for (const w of refused) expect(w.limit).toBeGreaterThanOrEqual(1);
    expect(refused.at(-1)!.limit).toBe(1);
    expect(sim.limiter.inFlight()).toBeLessThanOrEqual(1);
    capacity = 4;
    const back = sim.run(20_000, 1000);
    expect(back.at(-1)!.limit).toBeGreaterThanOrEqual(3);
  });

  it('never goes above --concurrency-max, and reaches it when the server takes more', () => {
    const sim = simulate({ capacity: () => 1000, latency: flat }, { max: 12 });
    const windows = sim.run(5_000, 100);
    for (const w of windows) expect(w.limit).toBeLessThanOrEqual(12);
    expect(windows.at(-1)!.limit).toBe(12);
    expect(windows.at(-1)!.maxAdmitted).toBe(12);
  });

  it('with --concurrency-max 1 stays at 1', () => {
    const sim = simulate({ capacity: () => 1, latency: flat }, { max: 1 });
    for (const w of sim.run(2_000, 100)) expect(w.limit).toBe(1);
  });
});

describe('ConcurrencyLimit bookkeeping', () => {
  const clock = () => new ManualClock(0);

  function fill(limiter: ConcurrencyLimit): Permit[] {
    const permits: Permit[] = [];
    for (let p = limiter.tryAcquire(); p; p = limiter.tryAcquire()) permits.push(p);
    return permits;
  }

  it('starts at 4 (or the maximum when lower)', () => {
    expect(new ConcurrencyLimit({ max: 64, clock: clock() }).limit()).toBe(4);
    expect(new ConcurrencyLimit({ max: 3, clock: clock() }).limit()).toBe(3);
    expect(() => new ConcurrencyLimit({ max: 0, clock: clock() })).toThrow(/at least|>= 1/);
  });

  it('cuts once for a burst of refusals of requests sent at the same level', () => {
    const limiter = new ConcurrencyLimit({ max: 64, initial: 20, clock: clock() });
    const permits = fill(limiter);
    expect(permits).toHaveLength(20);
    for (const p of permits) p.release({ kind: 'overload', reason: 'status' });
    const s = limiter.stats();
    expect(s.overloads).toBe(20);
    expect(s.cuts).toBe(1);
    expect(s.limit).toBe(18);
    expect(s.ceiling).toBe(20);
  });

  it('steps back further with each refusal of a request sent after a cut (0.9, 0.8, … 0.5), never below 1', () => {
    const limiter = new ConcurrencyLimit({ max: 64, initial: 20, clock: clock() });
    const sizes: number[] = [];
    for (let i = 0; i < 8; i++) {
      // Every permit of this pass was granted after the last cut: its refusal is news.
      const held = fill(limiter);
      const refused = held.pop()!;
      for (const p of held) p.release({ kind: 'ignore' });
      refused.release({ kind: 'overload', reason: 'connection' });
      sizes.push(limiter.limit());
    }
    expect(sizes).toEqual([18, 14, 10, 6, 3, 1, 1, 1]);
  });

  it('ignores outcomes that say nothing about capacity', () => {
    const limiter = new ConcurrencyLimit({ max: 64, initial: 4, clock: clock() });
    for (let i = 0; i < 50; i++) for (const p of fill(limiter)) p.release({ kind: 'ignore' });
    expect(limiter.limit()).toBe(4);
    expect(limiter.stats()).toMatchObject({ overloads: 0, cuts: 0, inFlight: 0 });
  });

  it('does not grow while the limit is not what holds requests back', () => {
    const c = clock();
    const limiter = new ConcurrencyLimit({ max: 64, initial: 8, clock: c });
    for (let i = 0; i < 100; i++) {
      const p = limiter.tryAcquire()!;
      c.advance(RTT);
      p.release({ kind: 'answered' });
    }
    expect(limiter.limit()).toBe(8);
  });

  it('measures latency from the grant with the injected clock when the caller gives none', () => {
    const c = clock();
    const limiter = new ConcurrencyLimit({ max: 64, initial: 1, clock: c });
    const p = limiter.tryAcquire()!;
    c.advance(37);
    p.release({ kind: 'answered' });
    expect(limiter.stats().baselineMs).toBe(37);
  });

  it('hands permits to waiters first come, first served; an aborted wait leaves the line; a second release does nothing', async () => {
    const limiter = new ConcurrencyLimit({ max: 1, clock: clock() });
    const first = await limiter.acquire();
    const order: string[] = [];
    const controller = new AbortController();
    const a = limiter.acquire().then((p) => (order.push('a'), p));
    const b = limiter.acquire(controller.signal).then(
      (p) => (order.push('b'), p),
      (err: unknown) => (order.push('b aborted'), Promise.reject(err)),
    );
    const c = limiter.acquire().then((p) => (order.push('c'), p));
    expect(limiter.stats().waiting).toBe(3);
    controller.abort(new Error('stop'));
    await expect(b).rejects.toThrow('stop');
    first.release({ kind: 'answered', latencyMs: RTT });
    first.release({ kind: 'answered', latencyMs: RTT });
    const pa = await a;
    expect(limiter.inFlight()).toBe(1);
    pa.release({ kind: 'answered', latencyMs: RTT });
    (await c).release({ kind: 'answered', latencyMs: RTT });
    expect(order).toEqual(['b aborted', 'a', 'c']);
    expect(limiter.inFlight()).toBe(0);
  });
});
