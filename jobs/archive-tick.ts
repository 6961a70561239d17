import path from 'node:path';
import type { ArchiveReportPayload, ArchiveSpec, ArchiveTickPayload } from './archive-job-data.ts';
import { ArchivePlan, archiveRunId } from './archive-plan.ts';
import { noteTick } from '../src/store/archive-state.ts';
import type { ControlJobKind, JobContext } from './job-kind.ts';

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
    await confineSpec(spec, ctx);
    const runId = archiveRunId(spec.archiveKey, job.scheduledAt);
    const runAtMs = ctx.clock.now();
    await noteTick(ctx.store.redis, ctx.store.keys.archive(spec.archiveKey), runId);
    const reportDir = path.join(spec.reportRoot, runId);
    await ctx.runs.start(ArchivePlan.fresh(spec, runId, runAtMs, ctx.store, ctx.client), { attempts: spec.attempts, startedAt: runAtMs, reportDir });
    const report: ArchiveReportPayload = { spec, runId, reportDir, startedAtMs: runAtMs };
    await ctx.runs.schedule('archive-report', report, { jobId: `${runId}-report`, delayMs: REPORT_POLL_MS, attempts: spec.attempts });
  },
};

/**
 * A scheduled run is planned and reported by whichever worker takes its tick: its inputs are read
 * and its report written by that worker, so they are held to the worker's --allow-read and
 * --allow-write like its jobs' files (NotAllowedError: the tick fails, nothing read or written).
 */
export async function confineSpec(spec: ArchiveSpec, ctx: Pick<JobContext, 'allowRead' | 'allowWrite'>): Promise<void> {
  if (ctx.allowRead) {
    for (const input of [spec.faces, ...(spec.persons ? [spec.persons] : [])]) await ctx.allowRead.checkPath(input, 'the archive input ');
  }
  if (ctx.allowWrite) {
    await ctx.allowWrite.checkPath(spec.outDir, 'the archive folder ');
    await ctx.allowWrite.checkPath(spec.reportRoot, 'the report folder ');
  }
}
