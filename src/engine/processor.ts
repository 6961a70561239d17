import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import { classify, errorClass, isRetryable } from '../api/classify.ts';
import { describeError, ExistenceCheckError, HttpStatusError, JobRefusedError, ResultNotRecordedError } from '../errors.ts';
import { childLogger, scrubSecrets, type Logger } from '../log.ts';
import type { RowResult } from '../report/row-result.ts';
import { rowOfJobId } from '../store/keys.ts';
import { DocumentBusy, RowAlreadyDone, RunStopped, throwIfRowSettled } from '../store/row-signals.ts';
import { cutText } from '../text.ts';
import type { ControlJob, JobContext, RowJob, RowJobKind } from '../../jobs/job-kind.ts';
import { jobKind } from '../../jobs/registry.ts';
import type { JobEnvelope, JobSigner } from './job-signing.ts';
import { triesSpent } from './retry-budget.ts';

/** What a job of a cancelled run fails with: its row is left without a result (the report says cancelled). */
export const RUN_CANCELLED = 'the run was cancelled (idsync cancel)';
import { stopIfRefused } from './permission-stop.ts';

/** A throttled (429) job waits without spending attempts, but not forever. */
export const MAX_THROTTLES = 50;

const ERROR_EXCERPT = 300;

/** The result of a row whose job failed for good: its error, the error's class, and whether a rerun may help. */
export function failedResult(kind: Pick<RowJobKind, 'action' | 'ids'> | undefined, row: number, payload: unknown, err: unknown, attempts: number, now: number): RowResult {
  const http = err instanceof ExistenceCheckError ? err.cause : err;
  return {
    row,
    status: 'failed',
    action: kind?.action ?? 'job',
    ...(kind ? kind.ids(payload as never) : {}),
    attempts,
    ...(http instanceof HttpStatusError ? { httpStatus: http.status } : {}),
    error: cutText(scrubSecrets(describeError(err)), ERROR_EXCERPT),
    errorCode: errorClass(err),
    retryable: isRetryable(err),
    finishedAt: now,
  };
}

/**
 * Marks the UnrecoverableError of a job that found its run stopped: nothing was tried, so its row
 * gets no result (the report says `interrupted`, the rerun does it) rather than a failure.
 */
export const RUN_STOPPED = Symbol('idsync.runStopped');

/** What the processor tells about the jobs it ends (the metrics); cheap, never throws. */
export interface ProcessorObserver {
  /** A row's final result, recorded by this process (`kind`: the job kind's name). */
  rowFinished(result: RowResult, kind: string): void;
  /** An attempt failed and the job will be tried again. */
  retried(errorClass: string): void;
}

export interface ProcessorOptions {
  signer: JobSigner;
  /** The attempts of the worker's own settings, for a job that carries none. */
  attempts: number;
  /** Pauses a queue for every worker (a 429 with Retry-After). */
  rateLimit(queueName: string, ms: number): Promise<void>;
  observer?: ProcessorObserver;
}

/**
 * The one BullMQ processor for every idsync job. It checks the job's signature, dispatches to
 * the job's kind (jobs/registry.ts), records each row's final result in the run's store (before
 * BullMQ removes the job), and turns error classes into what steers BullMQ: permanent and fatal
 * → UnrecoverableError (tried once), 429 → a pause of the queue that spends no attempt,
 * anything retryable → rethrown for backoff, until the last attempt or, for a job on a retry
 * budget (watch), until the budget is spent.
 */
export function createProcessor(ctx: JobContext, options: ProcessorOptions) {
  return async (job: Job<JobEnvelope>, token?: string, signal?: AbortSignal): Promise<RowResult | undefined> => {
    const kind = jobKind(job.name);
    // A job scheduler's jobs are `repeat:<schedulerId>:<millis>`, signed once for the scheduler.
    const signedId = /^(repeat:.+):\d+$/.exec(job.id ?? '')?.[1] ?? job.id ?? '';
    if (!kind || !options.signer.verify(job.queueName, signedId, job.name, job.data?.p, job.data?.m)) {
      const err = new JobRefusedError(
        kind
          ? `job ${job.id} of ${job.queueName} is not signed with this deployment's key (or was altered): refused, nothing read or written. Were jobs added to Redis by something else than idsync, or do the workers use another API password?`
          : `job ${job.id} of ${job.queueName} names no known kind ("${job.name}"): refused`,
      );
      ctx.log.error({ jobId: job.id, queue: job.queueName, kind: job.name }, err.message);
      throw new UnrecoverableError(err.message);
    }
    const attempt = job.attemptsMade + 1;
    let child: Logger | undefined;
    if (kind.type === 'control') {
      const log = () => (child ??= childLogger(ctx.log, { jobId: job.id, kind: kind.name, attempt }));
      const control: ControlJob<never> = {
        id: job.id ?? '',
        payload: job.data.p as never,
        attempt,
        // The scheduler names its jobs `repeat:<schedulerId>:<millis>`: the tick's own time.
        scheduledAt: Number(/:(\d+)$/.exec(job.id ?? '')?.[1] ?? job.timestamp),
        ...(signal ? { signal } : {}),
        log,
        async later(ms, payload) {
          if (payload !== undefined) await job.updateData({ ...job.data, p: payload, m: options.signer.sign(job.queueName, signedId, job.name, payload) });
          await job.moveToDelayed(Date.now() + ms, token);
          throw new DelayedError();
        },
      };
      await kind.run(control, ctx);
      return undefined;
    }

    const runId = job.queueName;
    const row = rowOfJobId(job.id);
    if (row === undefined) throw new UnrecoverableError(`job ${job.id} of run ${runId} names no row`);
    const run = ctx.store.run(runId);
    const log = () => (child ??= childLogger(ctx.log, { runId, jobId: job.id, row, attempt }));
    const observer = options.observer;
    const rowJob: RowJob<never> = {
      runId,
      row,
      payload: job.data.p as never,
      attempt,
      inDoubt: job.data.d === true || job.stalledCounter > 0,
      markInDoubt: () => job.updateData({ ...job.data, d: true }),
      ...(signal ? { signal } : {}),
      log,
    };
    try {
      // Asked first: is the row settled (a job run again after a crash)? Did the run stop? A kind
      // that starts itself asks it in the same Redis call as its own first step.
      if (!kind.startsItself) throwIfRowSettled(await run.jobStart(row));
      const out = await kind.run(rowJob, ctx);
      if ('recorded' in out) {
        observer?.rowFinished(out.recorded, kind.name);
        return out.recorded;
      }
      const result: RowResult = { ...out, row, attempts: attempt, finishedAt: ctx.clock.now() };
      try {
        await run.record(result);
      } catch (err) {
        throw new ResultNotRecordedError(err);
      }
      observer?.rowFinished(result, kind.name);
      if (ctx.log.isLevelEnabled('debug')) log().debug({ status: result.status, action: result.action }, 'job done');
      return result;
    } catch (err) {
      if (err instanceof RowAlreadyDone) return err.prior;
      if (err instanceof RunStopped) throw Object.assign(new UnrecoverableError(err.message), { [RUN_STOPPED]: true });
      if (err instanceof DocumentBusy) {
        await job.moveToDelayed(Date.now() + err.retryInMs, token);
        throw new DelayedError();
      }
      if (signal?.aborted) {
        // Cancelled by this worker (shutdown grace over, or its lock was lost): hand the job back
        // without spending an attempt. An upload cut short has already marked its doubt.
        log().info({ reason: String(signal.reason ?? 'cancelled') }, 'job handed back to the queue');
        await job.moveToDelayed(Date.now(), token).catch(() => {});
        throw new DelayedError();
      }
      const c = classify(err);
      if (c.kind === 'retry-after' && (job.data.t ?? 0) < MAX_THROTTLES) {
        await job.updateData({ ...job.data, t: (job.data.t ?? 0) + 1 });
        run.stats.noteThrottle(ctx.clock.now());
        log().debug({ waitMs: c.ms }, 'throttled by the API: pausing the run');
        // Retry-After: 0 (or a date in the past) would be refused by Redis as an expiry.
        await options.rateLimit(job.queueName, Math.max(1, c.ms));
        throw Worker.RateLimitError();
      }
      // The enqueuing command's --attempts (or retry budget) travels with the job; a worker's own setting is the fallback.
      const final = c.kind === 'permanent' || c.kind === 'fatal' || (await triesSpent(job, attempt, options.attempts, ctx.clock.now()));
      if (!final) {
        run.stats.noteRetry(errorClass(err), ctx.clock.now());
        // One debug line per retry: the operator hears of rows that fail for good, not of each try.
        observer?.retried(errorClass(err));
        if (ctx.log.isLevelEnabled('debug')) log().debug({ err, kind: c.kind, ambiguous: c.ambiguous }, 'job failed; will retry');
        throw err;
      }
      // A run cancelled meanwhile (`idsync cancel` removed its jobs: "Missing key for job …") leaves
      // the row without a result, so that its report says cancelled rather than this error.
      if ((await run.getMeta().catch(() => undefined))?.state === 'cancelled') throw new UnrecoverableError(RUN_CANCELLED);
      // Recorded last, and nothing after it may make BullMQ try again: a failed result is final.
      const failed = failedResult(kind, row, job.data.p, err, attempt, ctx.clock.now());
      try {
        if (c.kind === 'fatal') await run.setFatal(scrubSecrets(describeError(err)), failed.errorCode!);
      } finally {
        await run.record(failed).then(
          () => observer?.rowFinished(failed, kind.name),
          (e: unknown) => log().error({ err: e }, 'cannot record a failed row'),
        );
      }
      log().warn({ err: { message: failed.error, code: failed.errorCode }, ...(failed.httpStatus ? { httpStatus: failed.httpStatus } : {}), kind: c.kind }, 'job failed for good');
      // The first rows all refused (401/403): a missing permission stops the run (exit 2).
      const stopped = await stopIfRefused(run, err).catch(() => undefined);
      if (stopped) log().error({ code: 'E_PERMISSION' }, `stopping the run: ${stopped}`);
      throw new UnrecoverableError(scrubSecrets(describeError(err)));
    }
  };
}
