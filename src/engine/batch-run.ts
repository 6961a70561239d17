import path from 'node:path';
import { publicSettings } from '../config/public-settings.ts';
import { describeError } from '../errors.ts';
import { childLogger, scrubSecrets } from '../log.ts';
import { createProgress } from '../report/progress.ts';
import { ReportWriter, type RunSummary } from '../report/report-writer.ts';
import type { RowResult } from '../report/row-result.ts';
import type { MissingReason } from '../report/run-report.ts';
import { summaryLines } from '../report/summary-lines.ts';
import { runQueueName } from '../store/keys.ts';
import type { RunPlan } from '../../jobs/job-kind.ts';
import { exitCodeForOutcome, type Ending } from './outcome.ts';
import { DEFAULT_WINDOW, feedRun } from './run-feeder.ts';
import { ownerNow, runReport, startRun, workerPool } from './run-services.ts';
import type { Session } from './session.ts';
import { waitForRun } from './wait-loop.ts';

export interface BatchRunOptions {
  session: Session;
  plan: RunPlan;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  signal: AbortSignal;
  /** Human-readable lines (the summary); stdout by default. */
  out: (line: string) => void;
  reportDir: string;
  /** The next step printed when rows failed (e.g. "retry them with: idsync import …/failed.csv"). */
  retryHint?: (failedCsv: string) => string;
  /** Most jobs waiting in the run's queue (default DEFAULT_WINDOW). */
  window?: number;
  /** Test hooks. */
  pollMs?: number;
  graceMs?: number;
  idleCheckMs?: number;
  tty?: boolean;
}

export interface BatchResult {
  summary: RunSummary;
  ending: Ending;
  exitCode: number;
}

/** How often a running command tells Redis it is alive (`idsync runs` shows stale owners). */
const HEARTBEAT_MS = 10_000;

/** Rows without a result when the run ended: `interrupted` when it stopped (its rerun does them), `failed` when their jobs were lost. */
const MISSING: Record<Ending, MissingReason> = {
  done: { code: 'E_LOST', text: 'no result' },
  lost: { code: 'E_LOST', text: 'its job vanished from the queue (was the queue emptied by hand?); run the same command again to retry it' },
  interrupted: { code: 'E_INTERRUPTED', text: 'not finished before the interrupt; run the same command again to resume', status: 'interrupted' },
  fatal: { code: 'E_INTERRUPTED', text: 'not done: the run stopped on a fatal error', status: 'interrupted' },
  stopped: { code: 'E_INTERRUPTED', text: 'not done: the run had to stop', status: 'interrupted' },
  cancelled: { code: 'E_CANCELLED', text: 'not done: the run was cancelled (idsync cancel); run the same command again to do it', status: 'interrupted' },
};

/**
 * The life of a run over a list of rows (import, export, verify, archive once): read the whole
 * input first (one that cannot be read sends nothing), register the run, work it with this
 * process's workers and/or `idsync worker` processes, queue its rows a window at a time, wait,
 * write the report (while the run goes on), and map the ending onto an exit code.
 */
export async function runBatch(o: BatchRunOptions): Promise<BatchResult> {
  const { session, plan } = o;
  const log = childLogger(session.log, { runId: plan.runId });
  const clock = session.clock;
  const total = await plan.check(o.signal);
  const startedAt = clock.now();
  const { run, resumed } = await startRun(session, plan, { total, startedAt, reportDir: o.reportDir });
  if (resumed) log.info('resuming an earlier run of this command on this input: rows already done are skipped');
  const queue = session.queue(runQueueName(plan.runId));
  session.metrics?.followRun(plan.runId);
  await applyRateLimit(session, queue, log);
  const graceMs = o.graceMs ?? 30_000;
  const pool = session.config.workers > 0 ? workerPool(session, graceMs, plan.command) : undefined;
  if (pool) await pool.serve(queue.name);
  else log.info('--workers 0: waiting for `idsync worker` processes sharing this Redis to do the work');

  // Written while the run goes on (rows in order as their results come in).
  let prepared = 0;
  const report = runReport(run, plan, { reportDir: o.reportDir, invocationStart: startedAt, log, preparedThrough: () => prepared });
  let finished = false;
  try {
    let feeding = true;
    let feedError: unknown;
    const cancelled = new AbortController();
    const fed = feedRun({ plan, run, queue, signer: session.signer, attempts: session.config.attempts, window: o.window ?? DEFAULT_WINDOW, signal: AbortSignal.any([o.signal, cancelled.signal]), clock, log, onPrepared: (row) => (prepared = row) })
      .then((counts) => {
        log.info({ rows: counts.rows, queued: counts.queued, rejected: counts.rejected, alreadyDone: counts.settled }, 'every row queued');
        return counts;
      })
      .catch((err: unknown) => {
        feedError = err;
        log.error({ err: { message: scrubSecrets(describeError(err)) } }, 'cannot queue the rest of the run; stopping it');
        return undefined;
      })
      .finally(() => {
        feeding = false;
      });
    let lastBeat = clock.now();
    const progress = createProgress({
      log,
      label: plan.command,
      ...(pool ? { concurrency: () => session.config.concurrency } : {}),
      ...(o.tty !== undefined ? { tty: o.tty } : {}),
    });
    let ending: Ending;
    try {
      ending = await waitForRun({
        run,
        queue,
        total,
        feeding: () => feeding,
        halted: () => feedError !== undefined,
        signal: o.signal,
        log,
        clock,
        progress,
        pollMs: o.pollMs ?? 250,
        idleCheckMs: o.idleCheckMs ?? 10_000,
        workersElsewhere: pool === undefined,
        ...(pool ? { local: pool } : {}),
        onResults: () => void report.advance(),
        ...(session.config.concurrencyMode === 'auto' ? { concurrency: () => ({ limit: session.client.concurrencyLimit(), overloaded: session.client.stats().overloaded }) } : {}),
        onTick: () => {
          if (clock.now() - lastBeat < HEARTBEAT_MS) return;
          lastBeat = clock.now();
          void run.updateMeta({ owner: ownerNow(lastBeat) }).catch(() => undefined);
        },
      });
    } finally {
      progress.stop();
    }
    if (ending === 'cancelled') cancelled.abort();
    await fed;
    await pool?.close(ending === 'interrupted' ? graceMs : 60_000);
    const meta = await run.getMeta().catch(() => undefined);
    const over = ending === 'done' || ending === 'lost';
    // A run that stopped keeps its queue paused, so no worker goes on with it before its rerun;
    // one that is never run again drops its jobs, and so does a cancelled one (what the feeder
    // queued after `idsync cancel` emptied the queue).
    if (!over && (plan.resumable === false || ending === 'cancelled')) await queue.obliterate({ force: true }).catch(() => undefined);
    else if (!over) await queue.pause().catch(() => undefined);
    await run.updateMeta({ state: ending === 'cancelled' ? 'cancelled' : over ? 'done' : 'stopped', endedAt: clock.now(), owner: undefined }).catch(() => undefined);

    finished = true;
    const stopped = ending === 'fatal' ? (meta?.fatal ?? 'fatal error') : ending === 'stopped' ? scrubSecrets(describeError(feedError)) : undefined;
    const missing: MissingReason = stopped ? { ...MISSING[ending], text: `not done: the run stopped: ${stopped}` } : MISSING[ending];
    const summary = await report.finish(missing, (endedAt) => ({
      runId: plan.runId,
      command: plan.command,
      manifest: plan.input,
      startedAt: new Date(startedAt).toISOString(),
      endedAt: endedAt.toISOString(),
      interrupted: ending === 'interrupted',
      seconds: Math.max(0, (endedAt.getTime() - startedAt) / 1000),
      options: publicSettings(session.config),
    }));
    const failedCsv = path.join(summary.reportDir, 'failed.csv');
    // One next step: after a stop, its cause; after Ctrl-C, run again; after rows not OK, retry failed.csv.
    const shown = plan.report.statuses ? { statuses: plan.report.statuses } : {};
    const stop = stopped ?? (ending === 'cancelled' ? 'the run was cancelled from elsewhere (idsync cancel)' : undefined);
    for (const line of summaryLines(plan.command, summary, { ...shown, ...(o.retryHint ? { retry: o.retryHint(failedCsv) } : {}), ...(stop ? { stopped: stop } : {}) })) o.out(line);
    return { summary, ending, exitCode: exitCodeForOutcome({ ending, counts: summary.counts }) };
  } finally {
    if (!finished) await report.discard(); // the run ended in an error before its report was finished
  }
}

/**
 * --rate is kept with the API in Redis and applied to each run's queue (BullMQ's global limiter),
 * so workers on other machines follow it; a command without --rate keeps a stored limit in force
 * and says so, so nobody wonders why a run is slow. --rate 0 removes it.
 */
async function applyRateLimit(session: Session, queue: ReturnType<Session['queue']>, log: Session['log']): Promise<void> {
  const given = session.config.rate;
  if (given === 0) {
    // --rate 0: no limit, and the stored one is forgotten (`idsync limits --clear` does the same).
    if ((await session.store.rateLimit()) !== undefined) log.info('--rate 0: removed the rate limit stored for this API');
    await session.store.setRateLimit(undefined);
    await queue.removeGlobalRateLimit().catch(() => undefined);
    return;
  }
  if (given) await session.store.setRateLimit(given);
  const rate = given ?? (await session.store.rateLimit());
  if (rate) await queue.setGlobalRateLimit(rate, 1000);
  else await queue.removeGlobalRateLimit?.().catch(() => undefined);
  if (!given && rate) log.warn({ rate }, `this API keeps a rate limit of ${rate} requests per second set by an earlier command; pass --rate N to change it`);
}

/** `--dry-run`: every row validated and reported as what would be done; nothing is queued or sent. */
export async function dryRunBatch(o: { plan: RunPlan; reportDir: string; out: (line: string) => void; signal: AbortSignal }): Promise<BatchResult> {
  const { plan } = o;
  const startedAt = new Date();
  await plan.check(o.signal);
  const writer = new ReportWriter(o.reportDir, plan.report.columns, plan.report.knownColumns, plan.report.failedRow, plan.report.failedFormat);
  await writer.guard(async () => {
    for await (const row of plan.rows(o.signal)) {
      const result: RowResult = row.result
        ? { ...row.result, row: row.row }
        : { row: row.row, status: 'skipped', action: `dry-run: would ${plan.report.action}`, ...plan.report.ids(row.values), ...dryRunIds(row.job?.payload) };
      await writer.add(result, row.values, row.raw);
    }
  });
  const endedAt = new Date();
  const summary = await writer.finish({
    runId: plan.runId,
    command: `${plan.command} --dry-run`,
    manifest: plan.input,
    startedAt: startedAt.toISOString(),
    endedAt: endedAt.toISOString(),
    interrupted: false,
    seconds: (endedAt.getTime() - startedAt.getTime()) / 1000,
  });
  o.out(`dry run: ${summary.counts.skipped} rows would be ${plan.report.action}ed, ${summary.counts.rejected} rejected; nothing was sent`);
  o.out(`report: ${path.join(summary.reportDir, 'report.csv')}`);
  return { summary, ending: 'done', exitCode: exitCodeForOutcome({ ending: 'done', counts: summary.counts }) };
}


/** A dry run's report shows the file a row would upload as resolved (an absolute path). */
function dryRunIds(payload: unknown): Partial<RowResult> {
  const file = (payload as { item?: { file?: unknown } } | undefined)?.item?.file;
  return typeof file === 'string' ? { file } : {};
}
