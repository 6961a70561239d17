import { DelayedError, UnrecoverableError, Worker, type Job, type Queue } from 'bullmq';
import { classify } from '../src/api/classify.ts';
import { describeError, errorCode, HttpStatusError, ResultNotRecordedError } from '../src/errors.ts';
import { scrubSecrets, type Logger } from '../src/log.ts';
import { cutText } from '../src/text.ts';
import type { RowResult } from '../src/report/row-result.ts';
import { downloadFile } from './download-file.ts';
import { archiveDetections } from './archive-detections.ts';
import { archiveEnrollment } from './archive-enrollment.ts';
import { runArchiveReport, runArchiveTick } from './archive-control.ts';
import { DocumentBusy, isControlJob, RowAlreadyDone, RunStopped, throwIfRowSettled, type AfterJob, type JobContext, type JobData, type JobOutcome, type RowJobData } from './job-types.ts';
import { uploadDocument } from './upload-document.ts';

/** A throttled (429) job waits without spending attempts, but not forever. */
export const MAX_THROTTLES = 50;

const ERROR_EXCERPT = 300;

const FAILED_ACTION: Record<RowJobData['kind'], string> = {
  upload: 'upload',
  download: 'download',
  'archive-enrollment': 'archive-enrollment',
  'archive-detections': 'archive-detections',
};

export function failedResult(job: Job<RowJobData>, err: unknown, attempts: number): RowResult {
  const item = job.data.item as unknown as Record<string, unknown>;
  return {
    row: job.data.row,
    status: 'failed',
    action: FAILED_ACTION[job.data.kind],
    ...(typeof item.personId === 'string' ? { personId: item.personId } : {}),
    ...(typeof item.faceId === 'string' ? { faceId: item.faceId } : {}),
    ...(typeof item.detectionId === 'string' ? { detectionId: item.detectionId } : {}),
    ...(typeof item.documentId === 'string' ? { documentId: item.documentId } : {}),
    ...(typeof item.publicId === 'string' ? { documentId: item.publicId } : {}),
    ...(typeof item.file === 'string' ? { file: item.file } : {}),
    ...(typeof item.output === 'string' ? { output: item.output } : {}),
    attempts,
    ...(err instanceof HttpStatusError ? { httpStatus: err.status } : {}),
    error: cutText(scrubSecrets(describeError(err)), ERROR_EXCERPT),
    errorCode: errorCode(err),
    finishedAt: Date.now(),
  };
}

/**
 * The one BullMQ processor for every idsync job. It records each row's final result in the
 * run store (before BullMQ removes the job), and turns error classes into what steers BullMQ:
 * permanent and fatal → UnrecoverableError (tried once), 429 → pause the queue without
 * spending an attempt, anything retryable → rethrow for backoff, until the last attempt.
 */
export function createProcessor(ctx: JobContext, options: { attempts: number; queue: () => Queue }) {
  return async (job: Job<JobData>, token?: string, signal?: AbortSignal): Promise<RowResult> => {
    if (isControlJob(job.data)) {
      // Control jobs have no row: errors go to BullMQ's retry and backoff as they are.
      if (job.data.kind === 'archive-tick') await runArchiveTick(job as Job<never>, ctx, options.queue(), signal);
      else await runArchiveReport(job as Job<never>, ctx, options.queue(), token);
      return { row: 0, status: 'succeeded', action: job.data.kind };
    }
    const rowJob = job as Job<RowJobData>;
    const run = ctx.run(job.data.runId);
    // Asked first: does the row already have a final result (a job run again after a crash)?
    // Did the run stop? Uploads ask it in the same Redis call as their document claim.
    if (job.data.kind !== 'upload') {
      try {
        throwIfRowSettled(await run.jobStart(job.data.row));
      } catch (err) {
        if (err instanceof RowAlreadyDone) return err.prior;
        if (err instanceof RunStopped) throw new UnrecoverableError(err.message);
        throw err;
      }
    }

    const attempt = job.attemptsMade + 1;
    // Made on first use: a pino child (bindings serialised through redaction) per job cost
    // ~0.2 ms of CPU, paid for every row although most jobs log nothing at the default level.
    let child: Logger | undefined;
    const log = () => (child ??= ctx.log.child({ runId: job.data.runId, jobId: job.id, row: job.data.row, attempt }));
    const after: AfterJob = {};
    try {
      const outcome: JobOutcome = await dispatch(rowJob, ctx, signal, after);
      const result: RowResult = { ...outcome, row: job.data.row, attempts: attempt, finishedAt: Date.now() };
      try {
        await run.setResult(result, after.stored?.commit);
        after.stored?.settled();
      } catch (err) {
        // The work is done (maybe even recorded, if only the reply was lost): never "failed".
        // The retry finds the row's result, or the document stored, or asks the API.
        await after.stored?.fallback().catch(() => undefined);
        if (job.data.kind === 'upload') await job.updateData({ ...job.data, ambiguous: true }).catch(() => undefined);
        throw new ResultNotRecordedError(err);
      }
      if (ctx.log.isLevelEnabled('debug')) log().debug({ status: result.status, action: result.action }, 'job done');
      return result;
    } catch (err) {
      if (err instanceof RowAlreadyDone) return err.prior;
      if (err instanceof RunStopped) throw new UnrecoverableError(err.message);
      if (err instanceof DocumentBusy) {
        await job.moveToDelayed(Date.now() + err.retryInMs, token);
        throw new DelayedError();
      }
      if (signal?.aborted) {
        // Cancelled by this worker (shutdown grace over, or its lock was lost): hand the job
        // back without spending an attempt. An upload cut short has already marked its doubt.
        log().info({ reason: String(signal.reason ?? 'cancelled') }, 'job handed back to the queue');
        await job.moveToDelayed(Date.now(), token).catch(() => {});
        throw new DelayedError();
      }
      const c = classify(err);
      if (c.kind === 'retry-after' && (job.data.throttles ?? 0) < MAX_THROTTLES) {
        await job.updateData({ ...job.data, throttles: (job.data.throttles ?? 0) + 1 });
        log().debug({ waitMs: c.ms }, 'throttled by the API: pausing the queue');
        // Retry-After: 0 (or a date in the past) would be refused by Redis as an expiry.
        await options.queue().rateLimit(Math.max(1, c.ms));
        throw Worker.RateLimitError();
      }
      // The enqueuing command's --attempts travels with the job; a worker's own setting is the fallback.
      const final = c.kind === 'permanent' || c.kind === 'fatal' || attempt >= (job.opts.attempts ?? options.attempts);
      if (final) {
        await run.setResult(failedResult(rowJob, err, attempt));
        if (c.kind === 'fatal') await run.setFatal(scrubSecrets(describeError(err)), errorCode(err));
        log().warn({ err, kind: c.kind }, 'job failed for good');
        throw new UnrecoverableError(scrubSecrets(describeError(err)));
      }
      log().info({ err, kind: c.kind, ambiguous: c.ambiguous }, 'job failed; will retry');
      throw err;
    }
  };
}

function dispatch(job: Job<RowJobData>, ctx: JobContext, signal: AbortSignal | undefined, after: AfterJob): Promise<JobOutcome> {
  switch (job.data.kind) {
    case 'upload':
      return uploadDocument(job as Job<never>, ctx, signal, after);
    case 'download':
      return downloadFile(job as Job<never>, ctx, signal);
    case 'archive-enrollment':
      return archiveEnrollment(job as Job<never>, ctx, signal);
    case 'archive-detections':
      return archiveDetections(job as Job<never>, ctx, signal);
  }
}
