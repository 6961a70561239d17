import type { Queue } from 'bullmq';
import type { Logger } from '../log.ts';
import type { Clock } from '../pacing/clock.ts';
import type { Progress } from '../report/progress.ts';
import { countedRows, type StatusCounts } from '../report/row-result.ts';
import type { RunStore } from '../store/run-store.ts';
import type { Ending } from './outcome.ts';
import { queuedJobs } from './run-feeder.ts';
import type { WorkerPool } from './worker-pool.ts';

export interface RunStatus {
  /** Rows with a result. */
  done: number;
  counts: StatusCounts;
  /** Jobs of the run still in its queue (waiting, delayed, active). */
  queued: number;
}

/** How far a run is, in two small Redis reads (no scan of its rows). */
export async function runStatus(run: RunStore, queue: Queue): Promise<RunStatus> {
  const [counts, queued] = await Promise.all([run.counts(), queuedJobs(queue)]);
  return { done: countedRows(counts), counts, queued };
}

export interface WaitOptions {
  run: RunStore;
  queue: Queue;
  /** The run's rows, once known. */
  total: number;
  /** False once every row has been queued (or settled): until then the run cannot be "lost". */
  feeding: () => boolean;
  /** True when the run cannot go on (queueing failed: Redis out of memory, say). */
  halted?: () => boolean;
  signal: AbortSignal;
  log: Logger;
  clock: Clock;
  progress: Progress;
  pollMs: number;
  /** How long nothing may move before the loop checks that the run's jobs still exist. */
  idleCheckMs: number;
  /** --workers 0: the work is left to `idsync worker` processes; warn while none serves the run. */
  workersElsewhere: boolean;
  /** This process's own workers: their finished jobs wake the loop before pollMs is over. */
  local?: Pick<WorkerPool, 'processed' | 'onProcessed'>;
  /** Called when more rows have results than at the last look (not awaited). */
  onResults?: () => void;
  /** Called every loop (the owner's heartbeat). */
  onTick?: () => void;
  /** The API client's adaptive concurrency, shown with the progress (auto mode). */
  concurrency?: () => { limit: number; overloaded: number } | undefined;
}

/**
 * The one wait of every command that runs a list of rows: until every row has a result
 * ('done'), Ctrl-C ('interrupted'), a fatal error recorded by a job ('fatal'), the run cancelled
 * by `idsync cancel --force` ('cancelled'), or rows without a
 * result while none of the run's jobs is left anywhere ('lost', checked only after nothing moved
 * for idleCheckMs, twice). Each look is a couple of small Redis reads, whatever the run's size.
 */
export async function waitForRun(o: WaitOptions): Promise<Ending> {
  let lostChecks = 0;
  let lastDone = -1;
  let lastChange = o.clock.now();
  let lastWorkerCheck = Number.NEGATIVE_INFINITY;
  for (;;) {
    // A Redis outage must not make Ctrl-C go unnoticed: the signal wins the race.
    const look = await untilAborted(Promise.all([o.run.counts(), o.run.getMeta()]), o.signal);
    if (!look) return 'interrupted';
    const [counts, meta] = look;
    const done = countedRows(counts);
    const c = o.concurrency?.();
    o.progress.update({ done, counts, total: o.total, ...(c ? { concurrency: c.limit, overloaded: c.overloaded } : {}) });
    o.onTick?.();
    if (done >= o.total && !o.feeding()) return 'done';
    if (o.signal.aborted) return 'interrupted';
    if (meta?.fatal) return 'fatal';
    // `idsync cancel --force` from another terminal: its queue is gone; stop feeding and report.
    if (meta?.state === 'cancelled') return 'cancelled';
    if (o.halted?.()) return 'stopped';
    if (o.workersElsewhere && o.clock.now() - lastWorkerCheck > 30_000) {
      lastWorkerCheck = o.clock.now();
      if ((await o.queue.getWorkersCount()) === 0) {
        o.log.warn({ waiting: o.total - done }, 'no `idsync worker` serves this run yet: start one with the same REDIS_URL and API settings (or run again without --workers 0)');
      }
    }
    if (done !== lastDone) {
      o.onResults?.();
      lastDone = done;
      lastChange = o.clock.now();
      lostChecks = 0;
    } else if (!o.feeding() && o.clock.now() - lastChange > o.idleCheckMs) {
      // Nothing moved for a while: make sure the rows without a result still have jobs somewhere.
      lostChecks = (await queuedJobs(o.queue)) > 0 ? 0 : lostChecks + 1;
      if (lostChecks >= 2) {
        o.log.error({ missing: o.total - done }, 'rows without a result have no job left in the queue');
        return 'lost';
      }
      lastChange = o.clock.now();
    }
    await nap(o, o.total - done);
  }
}

/**
 * Sleeps pollMs, or less: once this process's own workers have finished as many jobs as rows
 * were missing, the run may be complete, so the loop looks again at once rather than up to
 * pollMs later (a short run would otherwise spend a good part of its time here). Only a hint:
 * what counts is what Redis says.
 */
function nap(o: WaitOptions, missing: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (o.signal.aborted) return resolve();
    const startedAt = o.local?.processed() ?? 0;
    let unsubscribe: (() => void) | undefined;
    const sleeping = new AbortController();
    const done = () => {
      sleeping.abort();
      unsubscribe?.();
      o.signal.removeEventListener('abort', done);
      resolve();
    };
    o.clock.sleep(o.pollMs, sleeping.signal).then(done, () => undefined);
    o.signal.addEventListener('abort', done, { once: true });
    if (o.local) {
      const local = o.local;
      unsubscribe = local.onProcessed(() => {
        if (local.processed() - startedAt >= missing) done();
      });
    }
  });
}

async function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return undefined;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}
