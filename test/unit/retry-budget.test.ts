import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/config/duration.ts';
import { budgetedJob, BUDGET_ATTEMPTS, jobRetryDelay } from '../../src/engine/retry-budget.ts';
import { HttpStatusError, NetworkError } from '../../src/errors.ts';

const s503 = new HttpStatusError({ method: 'POST', path: '/up', status: 503 });
const s403 = new HttpStatusError({ method: 'POST', path: '/up', status: 403 });
const refused = new NetworkError({ method: 'POST', path: '/up', sysCode: 'ECONNREFUSED', requestSent: false });

describe('jobRetryDelay (the workers\' backoffStrategy)', () => {
  it.each([
    // attemptsMade, error, the job's backoff, random, expected ms
    [1, s503, undefined, 0.999, 500],
    [20, s503, undefined, 0.999, 59_940], // import/export/archive: the default 60 s cap
    [20, s503, { delay: 300_000 }, 0.999, 299_700], // a job on a budget: its own cap
    [20, refused, { delay: 300_000 }, 0.5, 150_000],
    [10_000, s503, { delay: 300_000 }, 0.999, 299_700], // attempt numbers far past 30 do not overflow
    [20, s503, { delay: 200 }, 0.999, 200],
    [3, s503, { delay: 200 }, 0.5, 100],
    [1, s403, { delay: 300_000 }, 0.5, 0], // permanent: never retried
  ] as const)('attempt %i, %s, backoff %o, random %d → %i ms', (attempt, err, backoff, random, expected) => {
    expect(jobRetryDelay(attempt, err, backoff, () => random)).toBe(expected);
  });

  it('a job on a budget is queued with attempts that are never the limit and its cap as the backoff delay', () => {
    expect(budgetedJob({ budgetMs: 21_600_000, maxDelayMs: 300_000 })).toEqual({ hint: { b: 21_600_000 }, opts: { attempts: BUDGET_ATTEMPTS, backoff: { type: 'idsync', delay: 300_000 } } });
    // Six hours at the smallest cap the settings allow still fit in the attempts.
    expect(BUDGET_ATTEMPTS).toBeGreaterThan((6 * 3_600_000) / 50);
  });
});

describe('durations', () => {
  it.each([
    ['6h', 21_600_000],
    ['90m', 5_400_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
    ['500ms', 500],
    ['2d', 172_800_000],
    [' 5 M ', 300_000],
    ['0', 0],
    ['6', undefined],
    ['', undefined],
    ['h', undefined],
    ['-1h', undefined],
    ['1x', undefined],
  ])('parseDuration(%j) = %s', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    [21_600_000, '6h'],
    [5_400_000, '1h30m'],
    [61_000, '1m1s'],
    [1500, '1.5s'],
    [200, '200ms'],
    [90_061_000, '1d1h1m'],
  ])('formatDuration(%i) = %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});
