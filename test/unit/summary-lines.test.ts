import { describe, expect, it } from 'vitest';
import { summaryLines } from '../../src/report/summary-lines.ts';

const base = { runId: 'import-1', rows: 1500, bytes: 2048, reportDir: '/r', seconds: 10, itemsPerSecond: 50.5 };
const RETRY = 'retry the failed and rejected rows with: idsync import /r/failed.csv';
const NEXT_STEPS = /resume|retry|once that is fixed/;

describe('summaryLines', () => {
  it('after Ctrl-C: rows not finished are interrupted, and the one next step is to run the same command again', () => {
    const lines = summaryLines('import', { ...base, interrupted: true, counts: { succeeded: 505, skipped: 0, failed: 3, rejected: 0, interrupted: 992 }, errors: { E_INTERRUPTED: 992, E_SERVER: 3 } }, { retry: RETRY });
    expect(lines[0]).toBe('import (interrupted) import-1: 1500 rows: 505 succeeded, 0 skipped, 3 failed, 0 rejected, 992 interrupted; 2.0 KB in 10.0 s (50.5 items/s)');
    expect(lines).toContain('errors: E_INTERRUPTED 992, E_SERVER 3');
    expect(lines.filter((l) => NEXT_STEPS.test(l))).toEqual(['interrupted: run the same command again to resume']);
  });

  it('after a stop: its cause and one next step, not the retry of failed.csv', () => {
    const stopped = 'the first 20 rows all failed with 403 (…): the account idsync logs in with lacks the permission "Add Identity Files"; ask an administrator to grant it';
    const lines = summaryLines('import', { ...base, counts: { succeeded: 0, skipped: 0, failed: 20, rejected: 0, interrupted: 380 }, errors: { E_INTERRUPTED: 380, E_FORBIDDEN: 20 } }, { retry: RETRY, stopped });
    expect(lines.filter((l) => NEXT_STEPS.test(l))).toEqual([`stopped: ${stopped}; once that is fixed, run the same command again to resume`]);
  });

  it('after failures: the retry of failed.csv; after none: no next step', () => {
    expect(summaryLines('import', { ...base, counts: { succeeded: 1499, skipped: 0, failed: 1, rejected: 0 } }, { retry: RETRY }).filter((l) => NEXT_STEPS.test(l))).toEqual([RETRY]);
    expect(summaryLines('import', { ...base, counts: { succeeded: 1500, skipped: 0, failed: 0, rejected: 0 } }, { retry: RETRY }).filter((l) => NEXT_STEPS.test(l))).toEqual([]);
  });

  it('names the five largest error classes and how many more there are', () => {
    const errors = { A: 1, B: 7, C: 3, D: 9, E: 2, F: 5, G: 4 };
    const lines = summaryLines('export', { ...base, counts: { succeeded: 0, skipped: 0, failed: 31, rejected: 0 }, errors });
    expect(lines[1]).toBe('errors: D 9, B 7, F 5, G 4, C 3, 2 more classes');
  });
});
