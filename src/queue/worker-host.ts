import { Queue, Worker, type Job } from 'bullmq';
import { classify } from '../api/classify.ts';
import { retryDelay } from '../pacing/backoff.ts';
import type { Logger } from '../log.ts';
import { createProcessor, failedResult } from '../../jobs/process-job.ts';
import { isControlJob, type JobContext, type JobData, type RowJobData } from '../../jobs/job-types.ts';
import type { RowResult } from '../report/row-result.ts';
import type { RedisHandle } from './connection.ts';
import { QUEUE_PREFIX } from './queue-names.ts';

/** Jobs a worker runs at once per API connection (see startWorkerHost). */
export const JOBS_PER_CONNECTION = 3;

export interface WorkerHostOptions {
  redis: RedisHandle;
  queueName: string;
  /** API requests in flight in this process (--concurrency, the client's pool size). */
  concurrency: number;
  /** With --concurrency auto: the client's adaptive limit, which the jobs run at once follow. */
  adaptive?: { concurrencyLimit(): number; onConcurrencyChange(listener: (limit: number) => void): () => void };
  attempts: number;
  /** Most jobs per second across all workers (BullMQ's global limiter). */
  rate?: number;
  ctx: JobContext;
  log: Logger;
  /** How fast a crashed worker's jobs are taken back (lower in tests). */
  lockDurationMs?: number;
  stalledIntervalMs?: number;
}

export interface WorkerHost {
  worker: Worker<JobData, RowResult>;
  /** Jobs this host finished (completed or failed, retries included). */
  processed(): number;
  /** Calls back after each job this host finishes; returns the unsubscribe. */
  onProcessed(listener: () => void): () => void;
  /** Stops taking jobs; waits up to graceMs for the ones in flight, then hands the rest back. */
  close(graceMs?: number): Promise<void>;
}

/**
 * --rate becomes the queue's global limit, shared by every worker on every machine. The limit
 * lives in Redis with the queue: a command without --rate leaves it in force (an operator may
 * have set it for the API's sake) and says so, so nobody wonders why a run is slow.
 */
export async function applyQueueRateLimit(queue: Queue, rate: number | undefined, log: Logger): Promise<void> {
  if (rate) {
    await queue.setGlobalRateLimit(rate, 1000);
    return;
  }
  const current = await queue.getGlobalRateLimit();
  if (current) {
    log.warn({ max: current.max, durationMs: current.duration }, `this API's queue keeps a rate limit of ${current.max} jobs per ${current.duration} ms set by an earlier command; pass --rate N to change it`);
  }
}

export async function startWorkerHost(options: WorkerHostOptions): Promise<WorkerHost> {
  const { ctx, log } = options;
  const queue = new Queue(options.queueName, { connection: options.redis.connect('worker-queue'), prefix: QUEUE_PREFIX });
  await applyQueueRateLimit(queue, options.rate, log);
  const processor = createProcessor(ctx, { attempts: options.attempts, queue: () => queue });
  let processed = 0;
  const listeners = new Set<() => void>();
  const finished = () => {
    processed++;
    for (const l of listeners) l();
  };
  const worker = new Worker<JobData, RowResult>(options.queueName, processor, {
    connection: options.redis.connect('worker'),
    prefix: QUEUE_PREFIX,
    // Three jobs per connection: a job spends several ms on bookkeeping around its request (the
    // claim, the ledger's fsync, its result, BullMQ's move to the next job), and with two per
    // connection the pool's connections sat idle ~20 % of the time on loopback; with three, ~11 %
    // more uploads per second (10 alternated runs; four did no better). Requests in flight stay
    // bounded by the client's pool (connections = --concurrency); the extra jobs only queue on
    // it, each holding its file (at most READ_ONCE_MAX_BYTES) meanwhile.
    concurrency: (options.adaptive?.concurrencyLimit() ?? options.concurrency) * JOBS_PER_CONNECTION,
    lockDuration: options.lockDurationMs ?? 30_000,
    stalledInterval: options.stalledIntervalMs ?? 15_000,
    maxStalledCount: 10,
    removeOnComplete: { count: 0 },
    removeOnFail: { count: 0 },
    settings: {
      // retryDelay's 0 means "do not retry"; BullMQ reads 0 as "at once" and only -1 as "stop".
      backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) => {
        const delay = retryDelay(attemptsMade, classify(err), Math.random);
        return delay > 0 ? delay : -1;
      },
    },
  });
  const unfollow = options.adaptive?.onConcurrencyChange((limit) => {
    worker.concurrency = limit * JOBS_PER_CONNECTION;
  });
  worker.on('completed', finished);
  // A job can also fail without our processor recording why (stalled too often, lost lock):
  // make sure its row still ends with a result, or the run would wait for it forever.
  worker.on('failed', (job: Job<JobData> | undefined, err: Error) => {
    finished();
    // BullMQ fails a job that stalled too often (its workers kept dying) without calling us.
    const final = err.name === 'UnrecoverableError' || /stalled more than allowable limit/.test(err.message) || (job !== undefined && job.attemptsMade >= (job.opts.attempts ?? 1));
    if (!job || !final) return;
    if (isControlJob(job.data)) {
      log.error({ err, kind: job.data.kind, jobId: job.id }, 'archive control job failed for good');
      return;
    }
    const rowJob = job as Job<RowJobData>;
    void (async () => {
      const run = ctx.run(rowJob.data.runId);
      const prior = await run.getResult(rowJob.data.row);
      if (!prior) await run.setResult(failedResult(rowJob, err, job.attemptsMade));
    })().catch((e: unknown) => log.error({ err: e }, 'cannot record a failed job'));
  });
  worker.on('error', (err) => log.error({ err }, 'worker error'));
  // A job whose lock could not be renewed (Redis unreachable too long) may be taken by another
  // worker: stop this copy rather than let two upload the same document.
  worker.on('lockRenewalFailed', (jobIds: string[]) => {
    log.warn({ jobIds }, 'lost the lock of jobs in flight: cancelling them here');
    for (const id of jobIds) worker.cancelJob(id, 'lock lost');
  });
  await worker.waitUntilReady();
  log.debug({ queue: options.queueName, concurrency: options.concurrency }, 'worker started');
  return {
    worker,
    processed: () => processed,
    onProcessed(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async close(graceMs = 30_000) {
      unfollow?.();
      const graceful = worker.close();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), graceMs);
      });
      if ((await Promise.race([graceful, timeout])) === 'timeout') {
        log.warn({ graceMs }, 'in-flight jobs did not finish in time: handing them back to the queue');
        // close(true) would only wait for the graceful close already under way: abort the jobs.
        worker.cancelAllJobs('shutdown');
        let capTimer: NodeJS.Timeout | undefined;
        await Promise.race([graceful, new Promise<void>((resolve) => (capTimer = setTimeout(resolve, 10_000)))]);
        clearTimeout(capTimer);
      }
      clearTimeout(timer);
      await queue.close();
    },
  };
}
