import { countedRows, type StatusCounts } from '../../report/row-result.ts';
import type { ApiStore, WorkerInfo } from '../../store/api-store.ts';
import { runQueueName } from '../../store/keys.ts';
import type { ErrorClass, MinuteCounts } from '../../store/run-stats.ts';
import { ownerAlive, type RunMeta, type RunState } from '../../store/run-store.ts';
import type { Session } from '../../engine/session.ts';
import { etaSeconds, recentRate, type RecentRate } from './recent-rate.ts';

/** A run as `idsync runs` lists it. */
export interface RunSummaryView {
  apiUrl: string;
  runId: string;
  command: string;
  input: string;
  state: RunState;
  /** Rows per status (a verify run's also verified, mismatch, missing). */
  counts: StatusCounts;
  /** Rows with a result. */
  done: number;
  total?: number;
  createdAt: number;
  startedAt?: number;
  endedAt?: number;
  owner?: { host: string; pid: number; at: number; alive: boolean };
  fatal?: string;
  reportDir?: string;
}

/** One run in full, as `idsync status` and the dashboard show it. */
export interface RunView extends RunSummaryView {
  /** When this view was taken (epoch ms). */
  now: number;
  /** The run's jobs in its queue by state. */
  queue: { waiting: number; active: number; delayed: number; prioritized: number; paused: boolean };
  /** Jobs being worked on now (the queue's active jobs). */
  inFlight: number;
  rate?: RecentRate;
  /** Seconds left at the recent rate; undefined when there is no rate. */
  etaSeconds?: number;
  /** Of the latest invocation. */
  retries: number;
  throttles: number;
  errors: ErrorClass[];
  /** Processes serving the run's queue (their heartbeat is fresh). */
  workers: Array<WorkerInfo & { id: string }>;
  /** The API's stored global rate limit (requests per second), if any. */
  rateLimit?: number;
}

/** What `idsync runs` shows of a run: its meta and counts (one small read). */
export async function summarizeRun(store: ApiStore, meta: RunMeta, now: number): Promise<RunSummaryView> {
  const counts = await store.run(meta.runId).counts();
  return summaryOf(store.apiUrl, meta, counts, now);
}

function summaryOf(apiUrl: string, meta: RunMeta, counts: StatusCounts, now: number): RunSummaryView {
  return {
    apiUrl,
    runId: meta.runId,
    command: meta.command,
    input: meta.input,
    state: meta.state,
    counts,
    done: countedRows(counts),
    ...(meta.total !== undefined ? { total: meta.total } : {}),
    createdAt: meta.createdAt,
    ...(meta.startedAt !== undefined ? { startedAt: meta.startedAt } : {}),
    ...(meta.endedAt !== undefined ? { endedAt: meta.endedAt } : {}),
    ...(meta.owner ? { owner: { ...meta.owner, alive: meta.state === 'running' && ownerAlive(meta, now) } } : {}),
    ...(meta.fatal ? { fatal: meta.fatal } : {}),
    ...(meta.reportDir ? { reportDir: meta.reportDir } : {}),
  };
}

/**
 * Everything `idsync status` says of one run, in a handful of small reads whatever the run's
 * size: its meta and counts, its queue's job counts, its stats, two minutes of its timeline, the
 * API's workers and rate limit.
 */
export async function viewRun(session: Session, store: ApiStore, meta: RunMeta, now: number): Promise<RunView> {
  const run = store.run(meta.runId);
  const queue = session.queue(runQueueName(meta.runId), store);
  const minute = Math.floor(now / 60_000);
  const [counts, jobs, paused, stats, timeline, workers, rateLimit] = await Promise.all([
    run.counts(),
    queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized'),
    queue.isPaused(),
    run.stats.read(),
    run.stats.timeline(minute - 1, minute),
    store.workers(now),
    store.rateLimit(),
  ]);
  const summary = summaryOf(store.apiUrl, meta, counts, now);
  const running = meta.state === 'running';
  const rate = running ? recentRate(timeline, now, meta.startedAt) : undefined;
  const eta = running && meta.total !== undefined ? etaSeconds(meta.total - summary.done, rate?.perSecond) : undefined;
  return {
    ...summary,
    now,
    // BullMQ 6 keeps the jobs of a paused queue in its wait list.
    queue: { waiting: jobs.waiting ?? 0, active: jobs.active ?? 0, delayed: jobs.delayed ?? 0, prioritized: jobs.prioritized ?? 0, paused },
    inFlight: jobs.active ?? 0,
    ...(rate ? { rate } : {}),
    ...(eta !== undefined ? { etaSeconds: eta } : {}),
    retries: stats.retries,
    throttles: stats.throttles,
    errors: stats.classes,
    workers: workers.filter((w) => w.queues.includes(meta.runId)),
    ...(rateLimit !== undefined ? { rateLimit } : {}),
  };
}

/** The run's timeline (the dashboard's chart): the last 24 h of minutes. */
export async function runTimeline(store: ApiStore, runId: string): Promise<MinuteCounts[]> {
  return store.run(runId).stats.timeline();
}
