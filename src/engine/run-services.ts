import { hostname } from 'node:os';
import { RunReport } from '../report/run-report.ts';
import type { RunSummary } from '../report/report-writer.ts';
import { ApiStore } from '../store/api-store.ts';
import { CONTROL_QUEUE, runQueueName } from '../store/keys.ts';
import type { RunOwner, RunStore } from '../store/run-store.ts';
import type { JobContext, RunPlan, RunServices } from '../../jobs/job-kind.ts';
import { DEFAULT_WINDOW, feedRun } from './run-feeder.ts';
import { PROCESS_ID, type Session } from './session.ts';
import { runStatus } from './wait-loop.ts';
import { WorkerPool } from './worker-pool.ts';

/** This process as a run's owner (its heartbeat says it is alive). */
export function ownerNow(now: number): RunOwner {
  return { host: hostname(), pid: process.pid, at: now };
}

/** The report of a run: its lines in order, with their results from the run's store. */
export function runReport(run: RunStore, plan: RunPlan, options: { reportDir: string; invocationStart: number; log?: Session['log']; preparedThrough?: () => number }): RunReport {
  return new RunReport({
    lines: plan.lines(),
    columns: plan.report.columns,
    knownColumns: plan.report.knownColumns,
    ...(plan.report.failedRow ? { failedRow: plan.report.failedRow } : {}),
    ...(plan.report.failedFormat ? { failedFormat: plan.report.failedFormat } : {}),
    ...(plan.report.statuses ? { statuses: plan.report.statuses } : {}),
    getResults: (rows) => run.getResults(rows),
    retire: (rows) => run.retire(rows),
    ...(options.preparedThrough ? { preparedThrough: options.preparedThrough } : {}),
    reportDir: options.reportDir,
    invocationStart: options.invocationStart,
    action: plan.report.action,
    idsOf: plan.report.ids,
    ...(options.log ? { log: options.log } : {}),
  });
}

/** Registers a run as started by this process (meta, the API's list of runs); resumes one that exists. */
export async function startRun(session: Session, plan: RunPlan, options: { total: number; startedAt: number; reportDir: string }): Promise<{ run: RunStore; resumed: boolean }> {
  const run = session.store.run(plan.runId);
  const previous = await run.getMeta();
  await run.saveMeta({
    runId: plan.runId,
    command: plan.command,
    apiUrl: session.api.apiUrl,
    input: plan.input,
    ...(plan.inputSha256 ? { inputSha256: plan.inputSha256 } : {}),
    createdAt: previous?.createdAt ?? options.startedAt,
    startedAt: options.startedAt,
    total: options.total,
    state: 'running',
    dense: true,
    owner: ownerNow(session.clock.now()),
    reportDir: options.reportDir,
  });
  // Retries, throttles and error classes describe this invocation (the timeline goes on).
  await run.stats.reset(options.startedAt);
  // An earlier invocation that stopped paused its queue, so that no worker went on with it.
  await session.queue(runQueueName(plan.runId)).resume();
  return { run, resumed: previous !== undefined };
}

/** What control jobs (scheduled archive ticks and their reports) may do: start, watch and finish runs. */
function runServices(session: Session): RunServices {
  return {
    async start(plan, options) {
      const total = await plan.check();
      const { run } = await startRun(session, plan, { total, startedAt: options.startedAt, reportDir: options.reportDir });
      // Nobody waits for this run here: its owner is the report job, not this process.
      await run.updateMeta({ owner: undefined });
      const abort = new AbortController();
      await feedRun({ plan, run, queue: session.queue(runQueueName(plan.runId)), signer: session.signer, attempts: options.attempts, window: DEFAULT_WINDOW, signal: abort.signal, clock: session.clock, log: session.log });
    },
    async status(runId) {
      const run = session.store.run(runId);
      const [meta, status] = await Promise.all([run.getMeta(), runStatus(run, session.queue(runQueueName(runId)))]);
      return { done: status.done, total: meta?.total, queued: status.queued, ...(meta ? { state: meta.state } : {}) };
    },
    async finish(plan, missing) {
      const run = session.store.run(plan.runId);
      const meta = await run.getMeta();
      const startedAt = meta?.startedAt ?? session.clock.now();
      const report = runReport(run, plan, { reportDir: meta?.reportDir ?? plan.runId, invocationStart: startedAt, log: session.log });
      const summary: RunSummary = await report.finish(missing, (endedAt) => ({
        runId: plan.runId,
        command: plan.command,
        startedAt: new Date(startedAt).toISOString(),
        endedAt: endedAt.toISOString(),
        interrupted: false,
        seconds: Math.max(0, (endedAt.getTime() - startedAt) / 1000),
      }));
      // A cancelled run stays cancelled (`idsync runs` says so); its report is written all the same.
      await run.updateMeta({ state: meta?.state === 'cancelled' ? 'cancelled' : 'done', endedAt: session.clock.now() });
      return summary;
    },
    async schedule(kind, payload, options) {
      const queue = session.queue(CONTROL_QUEUE);
      await queue.add(kind, { p: payload, m: session.signer.sign(CONTROL_QUEUE, options.jobId, kind, payload) } as never, {
        jobId: options.jobId,
        delay: options.delayMs,
        attempts: options.attempts,
        backoff: { type: 'idsync' },
        removeOnComplete: true,
        removeOnFail: true,
      });
    },
  };
}

/**
 * The context jobs run in. Jobs talk to Redis through their own auto-pipelined connection:
 * commands issued in the same tick by concurrent jobs go out in one write.
 */
export function jobContext(session: Session): JobContext {
  const store = new ApiStore(session.redis.connect('jobs', { autoPipelining: true }), { apiUrl: session.api.apiUrl, root: session.config.redisPrefix, lockTtlMs: session.config.lockDurationMs, replicas: session.redis.replicas, log: session.log });
  const { allowRead, allowWrite } = session.config;
  return {
    client: session.client,
    store,
    ledger: session.ledger,
    log: session.log,
    clock: session.clock,
    runs: runServices(session),
    ...(allowRead ? { allowRead } : {}),
    ...(allowWrite ? { allowWrite } : {}),
  };
}

/** This process's workers, with the settings' concurrency, attempts and lock timings; closed with the session. */
export function workerPool(session: Session, graceMs: number, command = 'worker'): WorkerPool {
  const c = session.config;
  const pool = new WorkerPool({
    redis: session.redis,
    queuePrefix: session.store.queuePrefix,
    ctx: jobContext(session),
    signer: session.signer,
    log: session.log,
    concurrency: c.concurrency,
    ...(c.concurrencyMode === 'auto' ? { adaptive: session.client } : {}),
    attempts: c.attempts,
    lockDurationMs: c.lockDurationMs,
    stalledIntervalMs: c.stalledIntervalMs,
    workerId: PROCESS_ID,
    command,
    ...(session.metrics ? { observer: session.metrics } : {}),
  });
  session.observePool(pool);
  session.onClose(() => pool.close(graceMs));
  return pool;
}
