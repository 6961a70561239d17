import { describe, expect, it } from 'vitest';
import { ManualClock } from '../../src/pacing/clock.ts';
import { RequestSpacer } from '../../src/pacing/request-spacer.ts';

describe('RequestSpacer', () => {
  it('never lets a one-second window hold more than the rate', async () => {
    const clock = new ManualClock(0);
    const spacer = new RequestSpacer(10, clock);
    const starts: number[] = [];
    const waits = Array.from({ length: 35 }, () => spacer.wait().then(() => starts.push(clock.now())));
    for (let t = 0; t <= 5000; t += 1) {
      clock.set(t);
      await Promise.resolve();
      await Promise.resolve();
    }
    await Promise.all(waits);
    expect(starts).toHaveLength(35);
    for (const s of starts) expect(starts.filter((x) => x >= s && x < s + 1000).length).toBeLessThanOrEqual(10);
    expect(starts[0]).toBe(0);
  });

  it('refuses a non-positive rate', () => {
    expect(() => new RequestSpacer(0, new ManualClock(0))).toThrowError(RangeError);
  });
});
