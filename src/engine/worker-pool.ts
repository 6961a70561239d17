import { Worker, type Job } from 'bullmq';
import pLimit, { type LimitFunction } from 'p-limit';
import type { Logger } from '../log.ts';
import type { RowResult } from '../report/row-result.ts';
import { CONTROL_QUEUE, rowOfJobId } from '../store/keys.ts';
import type { RedisHandle } from '../store/redis/connection.ts';
import type { JobContext } from '../../jobs/job-kind.ts';
import { jobKind } from '../../jobs/registry.ts';
import type { JobEnvelope, JobSigner } from './job-signing.ts';
import { createProcessor, failedResult, RUN_CANCELLED, RUN_STOPPED, type ProcessorObserver } from './processor.ts';
import { jobRetryDelay } from './retry-budget.ts';

/**
 * Jobs a process runs at once per API connection. A job spends several ms on bookkeeping around
 * its request (the claim, the ledger's fsync, its result, BullMQ's move to the next job), during
 * which its connection would sit idle; a third job per connection keeps it busy, a fourth gains
 * nothing (docs/benchmarks.md, "Why the code is shaped so"). Requests in flight stay
 * bounded by the client's pool (connections = --concurrency); the extra jobs only queue on it,
 * each holding its file (at most READ_ONCE_MAX_BYTES) meanwhile.
 */
export const JOBS_PER_CONNECTION = 3;

export interface WorkerPoolOptions {
  redis: RedisHandle;
  queuePrefix: string;
  ctx: JobContext;
  signer: JobSigner;
  log: Logger;
  /** API requests in flight in this process (--concurrency, the client's pool size). */
  concurrency: number;
  /** With --concurrency auto: the client's adaptive limit, which the jobs run at once follow. */
  adaptive?: { concurrencyLimit(): number; onConcurrencyChange(listener: (limit: number) => void): () => void };
  attempts: number;
  /** How fast a crashed worker's jobs are taken back (lower in tests). */
  lockDurationMs: number;
  stalledIntervalMs: number;
  /**
   * This process as operators see it (host:pid): its heartbeat in the API's list of workers
   * (`idsync status` shows who serves a run) and the `processedBy` of the jobs it takes.
   */
  workerId?: string;
  /** The command this process runs, for the heartbeat. */
  command?: string;
  /** How often the heartbeat is written (default WORKER_HEARTBEAT_MS). */
  heartbeatMs?: number;
  /** Told about rows finished and retries (the metrics). */
  observer?: ProcessorObserver;
}

/** How often a process serving queues says so in Redis (stale after WORKER_STALE_MS of src/store/api-store.ts). */
export const WORKER_HEARTBEAT_MS = 10_000;

/**
 * This process's BullMQ workers: one per queue it serves (a run's own queue, or, for `idsync
 * worker`, every running run of the API and its control queue), all sharing one API client and
 * one limit of jobs at once, however many runs they serve.
 */
export class WorkerPool {
  readonly #o: WorkerPoolOptions;
  readonly #workers = new Map<string, Worker<JobEnvelope, RowResult | undefined>>();
  readonly #gate: LimitFunction;
  readonly #listeners = new Set<() => void>();
  #processed = 0;
  #heartbeat: NodeJS.Timeout | undefined;
  #announced = false;
  readonly #startedAt: number;

  readonly #unfollow: (() => void) | undefined;

  constructor(options: WorkerPoolOptions) {
    this.#o = options;
    this.#gate = pLimit(this.#jobsAtOnce());
    this.#startedAt = options.ctx.clock.now();
    // Auto mode: three jobs per request the client allows now, so jobs (each holding a file) do
    // not pile up on requests that may not start.
    this.#unfollow = options.adaptive?.onConcurrencyChange(() => {
      const jobs = this.#jobsAtOnce();
      this.#gate.concurrency = jobs;
      for (const worker of this.#workers.values()) worker.concurrency = jobs;
    });
  }

  #jobsAtOnce(): number {
    return (this.#o.adaptive?.concurrencyLimit() ?? this.#o.concurrency) * JOBS_PER_CONNECTION;
  }

  /** Jobs running in this process now. */
  active(): number {
    return this.#gate.activeCount;
  }

  /** Jobs this process finished (completed or failed, retries included). */
  processed(): number {
    return this.#processed;
  }

  /** Calls back after each job this process finishes; returns the unsubscribe. */
  onProcessed(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The queues served now. */
  served(): string[] {
    return [...this.#workers.keys()];
  }

  /** Starts serving a queue (once). */
  async serve(queueName: string): Promise<void> {
    if (this.#workers.has(queueName)) return;
    const o = this.#o;
    const processor = createProcessor(o.ctx, {
      signer: o.signer,
      attempts: o.attempts,
      rateLimit: (name, ms) => this.#workers.get(name)?.rateLimit(ms) ?? Promise.resolve(),
      ...(o.observer ? { observer: o.observer } : {}),
    });
    const worker = new Worker<JobEnvelope, RowResult | undefined>(queueName, (job, token, signal) => this.#gate(() => processor(job, token, signal)), {
      connection: o.redis.connect(`worker:${queueName}`),
      prefix: o.queuePrefix,
      ...(o.workerId ? { name: o.workerId } : {}),
      concurrency: this.#jobsAtOnce(),
      lockDuration: o.lockDurationMs,
      stalledInterval: o.stalledIntervalMs,
      maxStalledCount: 10,
      removeOnComplete: { count: 0 },
      removeOnFail: { count: 0 },
      settings: {
        // retryDelay's 0 means "do not retry"; BullMQ reads 0 as "at once" and only -1 as "stop".
        backoffStrategy: (attemptsMade: number, _type?: string, err?: Error, job?: { opts: { backoff?: number | { delay?: number } } }) => {
          const backoff = job?.opts.backoff;
          const delay = jobRetryDelay(attemptsMade, err, typeof backoff === 'object' ? backoff : undefined, Math.random);
          return delay > 0 ? delay : -1;
        },
      },
    });
    this.#workers.set(queueName, worker);
    worker.on('completed', () => this.#finished());
    worker.on('failed', (job, err) => {
      this.#finished();
      if (job) this.#recordIfUnrecorded(job, err);
    });
    worker.on('error', (err) => o.log.error({ err, queue: queueName }, 'worker error'));
    // A job whose lock could not be renewed (Redis unreachable too long) may be taken by another
    // worker: stop this copy rather than let two work on the same row.
    worker.on('lockRenewalFailed', (jobIds: string[]) => {
      o.log.warn({ jobIds, queue: queueName }, 'lost the lock of jobs in flight: cancelling them here');
      for (const id of jobIds) worker.cancelJob(id, 'lock lost');
    });
    await worker.waitUntilReady();
    o.log.debug({ queue: queueName, concurrency: o.concurrency }, 'serving a queue');
    if (o.workerId && !this.#heartbeat) {
      this.#heartbeat = setInterval(() => void this.#beat(), o.heartbeatMs ?? WORKER_HEARTBEAT_MS);
      this.#heartbeat.unref();
    }
    await this.#beat();
  }

  /** Tells Redis which queues this process serves now (never fails: the list is for operators). */
  async #beat(): Promise<void> {
    const o = this.#o;
    if (!o.workerId || (this.#workers.size === 0 && !this.#announced)) return;
    this.#announced = true;
    await o.ctx.store
      .noteWorker(o.workerId, { queues: this.served(), processed: this.#processed, at: o.ctx.clock.now(), ...(o.command ? { command: o.command } : {}), startedAt: this.#startedAt })
      .catch((err: unknown) => o.log.debug({ err }, 'cannot write the worker heartbeat'));
  }

  /** Stops serving a queue: waits up to graceMs for its jobs in flight, then hands the rest back. */
  async stop(queueName: string, graceMs: number): Promise<void> {
    const worker = this.#workers.get(queueName);
    if (!worker) return;
    this.#workers.delete(queueName);
    await closeWorker(worker, graceMs, this.#o.log);
    if (this.#workers.size > 0) await this.#beat();
  }

  /** Stops serving every queue (in parallel, each with the same grace), and leaves the list of workers. */
  async close(graceMs: number): Promise<void> {
    this.#unfollow?.();
    await Promise.all([...this.#workers.keys()].map((name) => this.stop(name, graceMs)));
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    if (this.#announced && this.#o.workerId) {
      this.#announced = false;
      await this.#o.ctx.store.forgetWorker(this.#o.workerId).catch(() => undefined);
    }
  }

  /**
   * Serves the control queue and every running run of the API until `signal` aborts, looking for
   * new runs (and runs that ended) every `pollMs`: what `idsync worker` does.
   */
  async serveRuns(list: () => Promise<Array<{ runId: string; state: string }>>, options: { pollMs: number; signal: AbortSignal; graceMs: number; onChange?: (served: string[]) => void }): Promise<void> {
    await this.serve(CONTROL_QUEUE);
    while (!options.signal.aborted) {
      try {
        const runs = await list();
        const running = new Set(runs.filter((r) => r.state === 'running').map((r) => r.runId));
        let changed = false;
        for (const runId of running) {
          if (!this.#workers.has(runId)) {
            await this.serve(runId);
            changed = true;
          }
        }
        for (const name of this.served()) {
          if (name !== CONTROL_QUEUE && !running.has(name)) {
            await this.stop(name, options.graceMs);
            changed = true;
          }
        }
        if (changed) options.onChange?.(this.served());
      } catch (err) {
        this.#o.log.warn({ err }, 'cannot list the runs to serve (is Redis down?); trying again');
      }
      await this.#o.ctx.clock.sleep(options.pollMs, options.signal).catch(() => undefined);
    }
  }

  #finished(): void {
    this.#processed++;
    for (const l of this.#listeners) l();
  }

  /**
   * A job can fail for good without the processor recording why (it stalled too often because its
   * workers kept dying, or it was refused): its row must still end with a result, or its run
   * would wait for it until it is declared lost.
   */
  #recordIfUnrecorded(job: Job<JobEnvelope>, err: Error): void {
    // A job that found its run stopped tried nothing: its row stays without a result (interrupted).
    if ((err as { [RUN_STOPPED]?: boolean })[RUN_STOPPED]) return;
    const final = err.name === 'UnrecoverableError' || /stalled more than allowable limit/.test(err.message) || job.attemptsMade >= (job.opts.attempts ?? 1);
    const row = rowOfJobId(job.id);
    const kind = jobKind(job.name);
    if (!final || row === undefined || kind?.type === 'control' || err.message === RUN_CANCELLED) {
      if (final && kind?.type === 'control') this.#o.log.error({ err, kind: job.name, jobId: job.id }, 'control job failed for good');
      return;
    }
    const run = this.#o.ctx.store.run(job.queueName);
    const rowKind = kind?.type === 'row' ? kind : undefined;
    void (async () => {
      const [prior] = await run.getResults([row]);
      if (!prior) await run.record(failedResult(rowKind, row, job.data?.p, err, job.attemptsMade, this.#o.ctx.clock.now()));
    })().catch((e: unknown) => this.#o.log.error({ err: e }, 'cannot record a failed job'));
  }
}

async function closeWorker(worker: Worker, graceMs: number, log: Logger): Promise<void> {
  const graceful = worker.close();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), graceMs);
  });
  if ((await Promise.race([graceful, timeout])) === 'timeout') {
    log.warn({ graceMs, queue: worker.name }, 'in-flight jobs did not finish in time: handing them back to the queue');
    // close(true) would only wait for the graceful close already under way: abort the jobs.
    worker.cancelAllJobs('shutdown');
    let capTimer: NodeJS.Timeout | undefined;
    await Promise.race([graceful, new Promise<void>((resolve) => (capTimer = setTimeout(resolve, 10_000)))]);
    clearTimeout(capTimer);
  }
  clearTimeout(timer);
}
