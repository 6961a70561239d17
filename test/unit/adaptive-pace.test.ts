import { describe, expect, it } from 'vitest';
import { AdaptivePace } from '../../src/pacing/adaptive-pace.ts';
import { ManualClock } from '../../src/pacing/clock.ts';

describe('AdaptivePace', () => {
  it('holds new requests until the pause ends, tells listeners, never shortens a pause', async () => {
    const clock = new ManualClock(1_000);
    const pace = new AdaptivePace(clock);
    const heard: Array<[number, number]> = [];
    pace.onThrottle((until, ms) => heard.push([until, ms]));
    await pace.wait(); // no pause: immediate
    pace.throttle(5_000);
    pace.throttle(1_000); // shorter: ignored
    expect(pace.until()).toBe(6_000);
    let released = false;
    const waiting = pace.wait().then(() => (released = true));
    await Promise.resolve();
    clock.advance(3_000);
    pace.throttle(4_000); // extended while waiting: until 8 000
    await new Promise((r) => setImmediate(r));
    clock.advance(2_000);
    await new Promise((r) => setImmediate(r));
    expect(released).toBe(false);
    clock.advance(2_000);
    await waiting;
    expect(released).toBe(true);
    expect(heard).toEqual([
      [6_000, 5_000],
      [8_000, 4_000],
    ]);
  });

  it('caps absurd pauses', () => {
    const clock = new ManualClock(0);
    const pace = new AdaptivePace(clock, { maxPauseMs: 60_000 });
    pace.throttle(10 ** 9);
    expect(pace.until()).toBe(60_000);
  });
});
