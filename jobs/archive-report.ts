import { summaryLines } from '../src/report/summary-lines.ts';
import type { ArchiveReportPayload } from './archive-job-data.ts';
import { ArchivePlan } from './archive-plan.ts';
import { REPORT_POLL_MS } from './archive-tick.ts';
import type { ControlJobKind } from './job-kind.ts';

/** A run whose progress stood still this long, with none of its jobs left anywhere, is reported as it is. */
export const REPORT_STALE_MS = 10 * 60_000;

/**
 * Writes a scheduled archive run's report once every line has a result. Until then it waits as a
 * delayed job, holding no worker slot; a run whose jobs all vanished (the queue emptied by hand)
 * is reported after REPORT_STALE_MS without progress, its missing lines `E_LOST`.
 */
export const archiveReport: ControlJobKind<ArchiveReportPayload> = {
  type: 'control',
  name: 'archive-report',
  async run(job, ctx) {
    const p = job.payload;
    const { done, total, queued, state } = await ctx.runs.status(p.runId);
    const now = ctx.clock.now();
    if (state !== 'cancelled' && (total === undefined || done < total)) {
      const changed = done !== p.lastDone;
      if (changed || queued > 0 || now - (p.lastChangeMs ?? now) < REPORT_STALE_MS) {
        return job.later(REPORT_POLL_MS, changed ? { ...p, lastDone: done, lastChangeMs: now } : { ...p, lastChangeMs: p.lastChangeMs ?? now });
      }
    }
    // The report is written by this worker, where the payload says: held to --allow-write.
    if (ctx.allowWrite) await ctx.allowWrite.checkPath(p.reportDir, 'the report folder ');
    const plan = ArchivePlan.stored(p.spec, p.runId, p.startedAtMs, ctx.store);
    if (state === 'cancelled') {
      const summary = await ctx.runs.finish(plan, { code: 'E_CANCELLED', text: 'not done: the run was cancelled (idsync cancel); the next run covers it' });
      ctx.log.child({ runId: p.runId }).warn({ counts: summary.counts, reportDir: summary.reportDir }, 'archive run cancelled; its report is written');
      return;
    }
    const summary = await ctx.runs.finish(plan, { code: 'E_LOST', text: 'its job vanished from the queue (was the queue emptied by hand?); the next run covers it' });
    ctx.log.child({ runId: p.runId }).info({ counts: summary.counts, bytes: summary.bytes, reportDir: summary.reportDir }, summaryLines('archive', summary)[0]);
  },
};
