import { describe, expect, it } from 'vitest';
import { retryDelay } from '../../src/pacing/backoff.ts';
import type { Classification } from '../../src/api/classify.ts';

const retry: Classification = { kind: 'retry', ambiguous: false };
const after = (ms: number): Classification => ({ kind: 'retry-after', ms, ambiguous: false });

describe('retryDelay', () => {
  it.each([
    // attempt, classification, random, expected ms
    [1, retry, 0.999, 500],
    [1, retry, 0.5, 250],
    [2, retry, 0.999, 999],
    [3, retry, 0.5, 1000],
    [7, retry, 0.5, 16_000],
    [8, retry, 0.5, 30_000],
    [9, retry, 0.999, 59_940],
    [20, retry, 0.999, 59_940],
    [1000, retry, 0.5, 30_000],
    [1, retry, 0, 1],
    [2, { kind: 'refresh-auth', ambiguous: false } as Classification, 0.5, 500],
    [1, after(10_000), 0, 10_000],
    [1, after(10_000), 0.5, 10_500],
    [1, after(60_000), 0.5, 60_500],
    [1, after(0), 0, 1],
    [1, after(3_600_000), 0, 300_000],
    [1, { kind: 'permanent', ambiguous: false } as Classification, 0.5, 0],
    [1, { kind: 'fatal', ambiguous: false } as Classification, 0.5, 0],
  ] as const)('attempt %i, %o, random %d → %i ms', (attempt, classification, random, expected) => {
    expect(retryDelay(attempt, classification, () => random)).toBe(expected);
  });

  it('honours custom base and cap', () => {
    expect(retryDelay(4, retry, () => 0.999, { baseMs: 100, capMs: 500 })).toBe(500);
    expect(retryDelay(1, after(20_000), () => 0, { retryAfterCapMs: 5_000 })).toBe(5_000);
  });
});
