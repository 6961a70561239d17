import type { Queue } from 'bullmq';
import type { Logger } from '../log.ts';
import { collectOldGarbage, ENQUEUE_COLLECT_EVERY_ROWS } from '../memory.ts';
import type { Clock } from '../pacing/clock.ts';
import type { RowResult } from '../report/row-result.ts';
import { rowJobId } from '../store/keys.ts';
import type { RunStore } from '../store/run-store.ts';
import type { PlannedRow, RunPlan } from '../../jobs/job-kind.ts';
import type { JobEnvelope, JobSigner } from './job-signing.ts';

/** Rows queued per Redis call at most. */
const BATCH = 500;
/**
 * The first batch is small and each next one twice as large, up to BATCH: workers get their first
 * jobs after 32 rows instead of 500, and the pass, whose first rows run cold (unoptimised code),
 * holds the event loop in shorter stretches while the first uploads start.
 */
const FIRST_BATCH = 32;
/** Default most jobs waiting in a run's queue: ~1 KB of Redis each. */
export const DEFAULT_WINDOW = 20_000;

export interface FeedCounts {
  /** Rows of the plan seen. */
  rows: number;
  queued: number;
  /** Rows settled by an earlier invocation: nothing queued. */
  settled: number;
  rejected: number;
}

export interface FeedOptions {
  plan: RunPlan;
  run: RunStore;
  queue: Queue;
  signer: JobSigner;
  attempts: number;
  /** Most jobs waiting (or running) in the queue at once: refilled as they finish. */
  window: number;
  signal: AbortSignal;
  clock: Clock;
  log: Logger;
  /** How often a full window looks again for room. */
  pollMs?: number;
  /** Called with the last row of each batch once its rows are queued or settled (in row order). */
  onPrepared?: (row: number) => void;
}

/** The jobs of a run in its queue: what waits, is delayed, or runs. */
export async function queuedJobs(queue: Queue): Promise<number> {
  const counts = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'waiting-children');
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/**
 * Queues a run's rows in order, keeping at most `window` jobs in its queue: Redis holds a window
 * of the run, not the run (a 10-million-row manifest costs tens of MB of Redis, not ten GB). Rows
 * settled by an earlier invocation are skipped; failed or rejected ones are done again; results
 * known without a job (rejected rows) are recorded at once. Stops at the signal.
 */
export async function feedRun(o: FeedOptions): Promise<FeedCounts> {
  const counts: FeedCounts = { rows: 0, queued: 0, settled: 0, rejected: 0 };
  const pollMs = o.pollMs ?? 200;
  // What the queue held at the last look, plus what was added since: looked at again only when
  // that estimate says the window is full.
  let backlog = 0;
  const waitForRoom = async (n: number) => {
    if (backlog + n <= o.window) return;
    for (;;) {
      backlog = await queuedJobs(o.queue);
      if (backlog + n <= o.window || o.signal.aborted) return;
      await o.clock.sleep(pollMs, o.signal).catch(() => undefined);
    }
  };
  const write = async (rows: PlannedRow[]) => {
    const states = await o.run.prepareRows(rows.map((r) => r.row), { recheckSettled: o.plan.recheckSettled === true });
    const results: RowResult[] = [];
    const jobs: Array<{ name: string; data: JobEnvelope; opts: Record<string, unknown> }> = [];
    const redo: number[] = [];
    rows.forEach((r, i) => {
      const state = states[i];
      if (state === 'settled') {
        counts.settled++;
        return;
      }
      if (state === 'redo') redo.push(r.row);
      if (r.result) {
        if (r.result.status === 'rejected') counts.rejected++;
        results.push({ ...r.result, row: r.row, finishedAt: o.clock.now() });
      } else if (r.job) {
        const jobId = rowJobId(r.row);
        jobs.push({
          name: r.job.kind,
          data: { p: r.job.payload, m: o.signer.sign(o.queue.name, jobId, r.job.kind, r.job.payload) },
          opts: { jobId, attempts: o.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true },
        });
      }
    });
    // A row done again must not find its earlier job (kept by BullMQ's id dedup) in the way.
    if (redo.length > 0) await Promise.all(redo.map((row) => o.queue.remove(rowJobId(row)).catch(() => 0)));
    await o.run.recordAll(results);
    if (jobs.length > 0) {
      await waitForRoom(jobs.length);
      if (o.signal.aborted) return;
      await o.queue.addBulk(jobs as never);
      backlog += jobs.length;
      counts.queued += jobs.length;
    }
    o.onPrepared?.(rows.at(-1)!.row);
  };
  // Two batches in flight: the next one is read and validated (CSV parsing, file stats) while the
  // previous one is written to Redis. Writes stay in order, one batch at a time.
  let writing: Promise<void> | undefined;
  let batch: PlannedRow[] = [];
  let batchSize = FIRST_BATCH;
  let collectedAt = 0;
  const flush = async (rows: PlannedRow[]) => {
    await writing;
    writing = write(rows);
    writing.catch(() => {}); // awaited (and thrown) by the next flush or at the end
  };
  for await (const row of o.plan.rows(o.signal, { claimOutputs: (claims) => o.run.claimOutputs(claims) })) {
    counts.rows++;
    batch.push(row);
    if (batch.length >= batchSize) {
      batchSize = Math.min(BATCH, batchSize * 2);
      await flush(batch);
      batch = [];
      if (counts.rows - collectedAt >= ENQUEUE_COLLECT_EVERY_ROWS) {
        collectedAt = counts.rows;
        collectOldGarbage();
      }
      if (o.signal.aborted) break;
    }
  }
  if (batch.length > 0 && !o.signal.aborted) await flush(batch);
  await writing;
  return counts;
}
