import path from 'node:path';
import type { ArchiveReportPayload, ArchiveTickPayload } from './archive-job-data.ts';
import { ArchivePlan, archiveRunId } from './archive-plan.ts';
import { noteTick } from '../src/store/archive-state.ts';
import type { ControlJobKind } from './job-kind.ts';

/** How often a scheduled run's report job looks whether the run is done. */
export const REPORT_POLL_MS = 1000;

/**
 * One tick of `idsync archive --cron`. BullMQ's job scheduler adds exactly one job per tick,
 * whichever and however many processes registered it, and one worker takes it: so each tick
 * plans exactly one run, named after the tick's own time (the same on every retry, so a retried
 * tick plans the same run again and adds nothing twice). The run's jobs go to its own queue,
 * served by every worker of the API; a delayed report job writes its report once they are done.
 */
export const archiveTick: ControlJobKind<ArchiveTickPayload> = {
  type: 'control',
  name: 'archive-tick',
  async run(job, ctx) {
    const { spec } = job.payload;
    const runId = archiveRunId(spec.archiveKey, job.scheduledAt);
    const runAtMs = ctx.clock.now();
    await noteTick(ctx.store.redis, ctx.store.keys.archive(spec.archiveKey), runId);
    const reportDir = path.join(spec.reportRoot, runId);
    await ctx.runs.start(ArchivePlan.fresh(spec, runId, runAtMs, ctx.store, ctx.client), { attempts: spec.attempts, startedAt: runAtMs, reportDir });
    const report: ArchiveReportPayload = { spec, runId, reportDir, startedAtMs: runAtMs };
    await ctx.runs.schedule('archive-report', report, { jobId: `${runId}-report`, delayMs: REPORT_POLL_MS, attempts: spec.attempts });
  },
};
