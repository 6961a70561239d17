import { describe, expect, it } from 'vitest';
import { etaSeconds, formatDuration, recentRate } from '../../src/commands/status/recent-rate.ts';
import { foldEvents } from '../../src/store/run-stats.ts';

const MIN = 60_000;
const at = (minute: number, second = 0) => minute * MIN + second * 1000;
const bucket = (minute: number, done: number, failed = 0) => ({ minute, done, failed, retries: 0, throttles: 0 });

describe('the rate over the last minute or two', () => {
  it('counts the current and the previous minute over the time they cover', () => {
    // 30 s into minute 101: minutes 100 and 101 cover 90 s.
    const r = recentRate([bucket(99, 1000), bucket(100, 60), bucket(101, 30)], at(101, 30));
    expect(r).toEqual({ perSecond: 1, seconds: 90 });
  });

  it('counts failed rows as work done, and only from the invocation start', () => {
    // Started 10 s into minute 101: 20 s of this invocation, 40 rows.
    const r = recentRate([bucket(100, 500), bucket(101, 30, 10)], at(101, 30), at(101, 10));
    expect(r!.seconds).toBe(20);
    expect(r!.perSecond).toBe(2);
  });

  it('is zero, not an average since start, when nothing finished lately; undefined in the first second', () => {
    expect(recentRate([bucket(10, 5000)], at(200))).toEqual({ perSecond: 0, seconds: 60 });
    expect(recentRate([], at(200, 0) + 500, at(200, 0))).toBeUndefined();
  });
});

describe('the ETA', () => {
  it('is the rows left at the recent rate, 0 when nothing is left, unknown without a rate (never NaN)', () => {
    expect(etaSeconds(100, 4)).toBe(25);
    expect(etaSeconds(101, 4)).toBe(26);
    expect(etaSeconds(0, 0)).toBe(0);
    expect(etaSeconds(-3, undefined)).toBe(0);
    expect(etaSeconds(10, 0)).toBeUndefined();
    expect(etaSeconds(10, undefined)).toBeUndefined();
    expect(etaSeconds(10, Number.NaN)).toBeUndefined();
    expect(etaSeconds(Number.NaN, 3)).toBe(0);
  });

  it('reads as a duration', () => {
    expect(formatDuration(12.4)).toBe('12s');
    expect(formatDuration(250)).toBe('4m 10s');
    expect(formatDuration(3 * 3600 + 5 * 60)).toBe('3h 05m');
    expect(formatDuration(2 * 86_400 + 7200)).toBe('2d 02h');
    expect(formatDuration(-5)).toBe('0s');
  });
});

describe('what a batch of events adds to the stats', () => {
  it('folds results, retries and throttles into per-minute buckets and error classes with their first example', () => {
    const fold = foldEvents([
      { type: 'result', result: { row: 1, status: 'succeeded', action: 'uploaded', finishedAt: at(5, 1) } },
      { type: 'result', result: { row: 2, status: 'skipped', action: 'in-ledger', finishedAt: at(5, 2) } },
      { type: 'result', result: { row: 3, status: 'failed', action: 'upload', errorCode: 'E_FORBIDDEN', error: 'answered 403', httpStatus: 403, personId: 'p', finishedAt: at(6) } },
      { type: 'result', result: { row: 4, status: 'failed', action: 'upload', errorCode: 'E_FORBIDDEN', error: 'second', finishedAt: at(6) } },
      { type: 'result', result: { row: 5, status: 'rejected', action: 'validate', errorCode: 'E_ROW_INVALID', error: 'bad guid', finishedAt: at(6) } },
      { type: 'retry', code: 'E_SERVER', at: at(6) },
      { type: 'throttle', at: at(7) },
    ]);
    expect(fold.minutes).toEqual({ '5': [2, 0, 0, 0], '6': [0, 2, 1, 0], '7': [0, 0, 0, 1] });
    expect(fold.retries).toBe(1);
    expect(fold.throttles).toBe(1);
    const forbidden = fold.classes.find((c) => c.code === 'E_FORBIDDEN')!;
    expect(forbidden).toMatchObject({ f: 2, j: 0, r: 0 });
    expect(JSON.parse(forbidden.x)).toEqual({ row: 3, status: 'failed', action: 'upload', error: 'answered 403', errorCode: 'E_FORBIDDEN', httpStatus: 403, personId: 'p', finishedAt: at(6) });
    expect(fold.classes.find((c) => c.code === 'E_ROW_INVALID')).toMatchObject({ f: 0, j: 1 });
    expect(fold.classes.find((c) => c.code === 'E_SERVER')).toMatchObject({ r: 1, x: '' });
  });
});
