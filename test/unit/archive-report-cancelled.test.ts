import { describe, expect, it } from 'vitest';
import { archiveReport } from '../../jobs/archive-report.ts';
import type { ControlJob, JobContext } from '../../jobs/job-kind.ts';
import type { ArchiveReportPayload } from '../../jobs/archive-job-data.ts';
import { silentLogger } from '../../src/log.ts';
import { systemClock } from '../../src/pacing/clock.ts';

describe('the report job of a scheduled archive run', () => {
  it('writes the report at once when the run was cancelled, its rows left E_CANCELLED, instead of waiting for them', async () => {
    const finished: Array<{ runId: string; code: string }> = [];
    let later = 0;
    const ctx = {
      log: silentLogger(),
      clock: systemClock,
      store: { redis: {}, keys: { run: () => ({}) } },
      runs: {
        status: async () => ({ done: 2, total: 10, queued: 0, state: 'cancelled' }),
        finish: async (plan: { runId: string }, missing: { code: string }) => {
          finished.push({ runId: plan.runId, code: missing.code });
          return { runId: plan.runId, rows: 10, counts: { succeeded: 2, skipped: 0, failed: 8, rejected: 0 }, bytes: 0, reportDir: '/r' };
        },
      },
    } as unknown as JobContext;
    const payload = { spec: { archiveKey: 'k', apiUrl: 'http://x', outDir: '/o', faces: '/f.csv', attempts: 1, pageSize: 10, reportRoot: '/r' }, runId: 'archive-k-1', reportDir: '/r/archive-k-1', startedAtMs: 1 } as ArchiveReportPayload;
    const job: ControlJob<ArchiveReportPayload> = { id: 'j', payload, attempt: 1, scheduledAt: 1, log: () => silentLogger(), later: async () => { later++; throw new Error('waited'); } };
    await archiveReport.run(job, ctx);
    expect(later).toBe(0);
    expect(finished).toEqual([{ runId: 'archive-k-1', code: 'E_CANCELLED' }]);
  });
});
