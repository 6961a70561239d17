import path from 'node:path';
import { DelayedError, type Job, type Queue } from 'bullmq';
import { QUEUE_PREFIX } from '../src/queue/queue-names.ts';
import { archiveRunId, loadPlan, planArchiveRun } from '../src/run/archive-plan.ts';
import { summaryLines, writeArchiveReport } from '../src/run/archive-report.ts';
import type { ArchiveReportJobData, ArchiveTickJobData } from './archive-job-data.ts';
import type { JobContext } from './job-types.ts';

/** How often a scheduled run's report job looks whether the run is done. */
export const REPORT_POLL_MS = 1000;
/** A run whose progress stood still this long, with none of its jobs left anywhere, is reported as is. */
export const REPORT_STALE_MS = 10 * 60_000;
/** Tick history kept per archive (the newest first), for operators and tests. */
const TICK_HISTORY = 1000;

export function tickHistoryKey(archiveKey: string): string {
  return `${QUEUE_PREFIX}:archive:${archiveKey}:ticks`;
}

/** The scheduler names its jobs `repeat:<schedulerId>:<millis>`: the tick's own time, the same on every retry. */
function tickMillis(job: Job): number {
  const m = /:(\d+)$/.exec(job.id ?? '');
  return m ? Number(m[1]) : job.timestamp;
}

/**
 * One tick of `idsync archive --cron`. BullMQ's job scheduler adds exactly one job per tick,
 * whichever and however many processes registered it, and one worker takes it: so each
 * tick plans exactly one run. The run's own jobs are spread over all workers like any other;
 * a delayed report job writes the run's report once they are done.
 */
export async function runArchiveTick(job: Job<ArchiveTickJobData>, ctx: JobContext, queue: Queue, signal?: AbortSignal): Promise<void> {
  const { spec } = job.data;
  const runId = archiveRunId(spec.archiveKey, tickMillis(job));
  const runAtMs = ctx.clock.now();
  const log = ctx.log.child({ runId });
  await ctx.redis.multi().lpush(tickHistoryKey(spec.archiveKey), runId).ltrim(tickHistoryKey(spec.archiveKey), 0, TICK_HISTORY - 1).exec();
  await planArchiveRun({ spec, runId, runAtMs, queue, redis: ctx.redis, client: ctx.client, log, ...(signal ? { signal } : {}) });
  const data: ArchiveReportJobData = { kind: 'archive-report', runId, row: 0, reportDir: path.join(spec.reportRoot, runId), startedAtMs: runAtMs };
  await queue.add('archive-report', data as never, { jobId: `${runId}-report`, delay: REPORT_POLL_MS, attempts: spec.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true });
}

/** Writes a scheduled run's report when every line has a result; until then it waits as a delayed job, holding no worker slot. */
export async function runArchiveReport(job: Job<ArchiveReportJobData>, ctx: JobContext, queue: Queue, token?: string): Promise<void> {
  const { runId } = job.data;
  const runs = ctx.run(runId);
  const total = (await runs.getMeta())?.total ?? 0;
  const done = await runs.countResults();
  const now = Date.now();
  if (done < total) {
    const changed = done !== job.data.lastDone;
    if (changed || now - (job.data.lastChangeMs ?? now) < REPORT_STALE_MS || (await ctx.run(runId).anyRowQueued(queue, (await loadPlan(ctx.redis, runId)).map((t) => t.row)))) {
      if (changed) await job.updateData({ ...job.data, lastDone: done, lastChangeMs: now });
      await job.moveToDelayed(now + REPORT_POLL_MS, token);
      throw new DelayedError();
    }
  }
  const summary = await writeArchiveReport({
    redis: ctx.redis,
    runId,
    reportDir: job.data.reportDir,
    startedAtMs: job.data.startedAtMs,
    endedAtMs: ctx.clock.now(),
    interrupted: false,
    missing: { code: 'E_LOST', text: 'its job vanished from the queue (was the queue emptied by hand?); the next run covers it' },
  });
  const log = ctx.log.child({ runId });
  log.info({ counts: summary.counts, bytes: summary.bytes, reportDir: summary.reportDir }, summaryLines(summary)[0]);
}
