import { Queue, Worker, type Job } from 'bullmq';
import { classify } from '../api/classify.ts';
import { retryDelay } from '../pacing/backoff.ts';
import type { Logger } from '../log.ts';
import { createProcessor, failedResult } from '../../jobs/process-job.ts';
import type { JobContext, JobData } from '../../jobs/job-types.ts';
import type { RowResult } from '../report/row-result.ts';
import type { RedisHandle } from './connection.ts';
import { QUEUE_PREFIX } from './queue-names.ts';

/** Jobs a worker runs at once per API connection (see startWorkerHost). */
export const JOBS_PER_CONNECTION = 2;

export interface WorkerHostOptions {
  redis: RedisHandle;
  queueName: string;
  /** API requests in flight in this process (--concurrency, the client's pool size). */
  concurrency: number;
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
  processed(): number;
  /** Stops taking jobs; waits up to graceMs for the ones in flight, then hands the rest back. */
  close(graceMs?: number): Promise<void>;
}

export async function startWorkerHost(options: WorkerHostOptions): Promise<WorkerHost> {
  const { ctx, log } = options;
  const queue = new Queue(options.queueName, { connection: options.redis.connect('worker-queue'), prefix: QUEUE_PREFIX });
  if (options.rate) await queue.setGlobalRateLimit(options.rate, 1000);
  const processor = createProcessor(ctx, { attempts: options.attempts, queue: () => queue });
  let processed = 0;
  const worker = new Worker<JobData, RowResult>(options.queueName, processor, {
    connection: options.redis.connect('worker'),
    prefix: QUEUE_PREFIX,
    // Twice as many jobs as connections: while one job does its Redis and ledger bookkeeping,
    // another already waits for the freed connection. Requests in flight stay bounded by the
    // client's pool (connections = --concurrency); the extra jobs only queue on it.
    concurrency: options.concurrency * JOBS_PER_CONNECTION,
    lockDuration: options.lockDurationMs ?? 30_000,
    stalledInterval: options.stalledIntervalMs ?? 15_000,
    maxStalledCount: 10,
    removeOnComplete: { count: 0 },
    removeOnFail: { count: 0 },
    settings: {
      backoffStrategy: (attemptsMade: number, _type?: string, err?: Error) => retryDelay(attemptsMade, classify(err), Math.random),
    },
  });
  worker.on('completed', () => {
    processed++;
  });
  // A job can also fail without our processor recording why (stalled too often, lost lock):
  // make sure its row still ends with a result, or the run would wait for it forever.
  worker.on('failed', (job: Job<JobData> | undefined, err: Error) => {
    processed++;
    if (!job || job.attemptsMade < (job.opts.attempts ?? 1) && err.name !== 'UnrecoverableError') return;
    void (async () => {
      const run = ctx.run(job.data.runId);
      const prior = await run.getResult(job.data.row);
      if (!prior) await run.setResult(failedResult(job, err, job.attemptsMade));
    })().catch((e: unknown) => log.error({ err: e }, 'cannot record a failed job'));
  });
  worker.on('error', (err) => log.error({ err }, 'worker error'));
  await worker.waitUntilReady();
  log.debug({ queue: options.queueName, concurrency: options.concurrency }, 'worker started');
  return {
    worker,
    processed: () => processed,
    async close(graceMs = 30_000) {
      const graceful = worker.close();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), graceMs);
      });
      if ((await Promise.race([graceful, timeout])) === 'timeout') {
        log.warn({ graceMs }, 'in-flight jobs did not finish in time: handing them back to the queue');
        await worker.close(true);
      }
      clearTimeout(timer);
      await queue.close();
    },
  };
}
