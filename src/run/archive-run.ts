import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import type { ApiClientOptions } from '../api/client.ts';
import { requireApiSettings, type Config } from '../config/load.ts';
import { ConfigError, UsageError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ExitCode, exitCodeForOutcome } from '../cli/exit-codes.ts';
import { systemClock, type Clock } from '../pacing/clock.ts';
import { openRedis, type RedisHandle } from '../queue/connection.ts';
import { jobIdFor, QUEUE_PREFIX, queueNameFor } from '../queue/queue-names.ts';
import { RunStore } from '../queue/run-store.ts';
import type { WorkerHost } from '../queue/worker-host.ts';
import type { RunSummary } from '../report/report-writer.ts';
import { checkArchiveInputs } from '../sources/archive-targets.ts';
import { Ledger } from '../state/ledger.ts';
import type { ArchiveSpec, ArchiveTickJobData } from '../../jobs/archive-job-data.ts';
import { archiveRunId, planArchiveRun } from './archive-plan.ts';
import { summaryLines, writeArchiveReport } from './archive-report.ts';
import { parseSchedule, parseSince } from './archive-schedule.ts';
import { createApiClient, loginWithRetries, startConfiguredWorkers, closeRunResources } from './job-context.ts';

export const DEFAULT_PAGE_SIZE = 100;

export interface ArchiveRunOptions {
  faces: string;
  outDir: string;
  persons?: string;
  tag?: string;
  since?: string;
  cron?: string;
  tz?: string;
  config: Config;
  log: Logger;
  /** Aborted on the first Ctrl-C/SIGTERM. */
  signal: AbortSignal;
  out?: (line: string) => void;
  /** Test hooks. */
  queueName?: string;
  clock?: Clock;
  clientOptions?: Partial<ApiClientOptions>;
  pageSize?: number;
  pollMs?: number;
  graceMs?: number;
  allowInstallRedis?: boolean;
}

export interface ArchiveRunResult {
  exitCode: number;
  /** The run's summary (once); undefined for --cron, which only stops when interrupted. */
  summary?: RunSummary;
}

/** An archive is "this API into this folder": its watermarks and its schedule belong to that pair. */
export function archiveKeyFor(apiUrl: string, outDir: string): string {
  return createHash('sha256').update(`${apiUrl}\n${path.resolve(outDir)}`).digest('hex').slice(0, 16);
}

export function schedulerIdFor(archiveKey: string): string {
  return `archive-${archiveKey}`;
}

/**
 * `idsync archive`: once (plan one run, work it with the in-process worker and/or remote
 * workers, wait, report, exit) or with --cron (register a BullMQ job scheduler whose ticks
 * plan the runs, and stay up as a worker until interrupted).
 */
export async function runArchive(options: ArchiveRunOptions): Promise<ArchiveRunResult> {
  const { config, log, signal } = options;
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const clock = options.clock ?? systemClock;
  // Everything that can be checked without the network is checked first (exit 2 on a mistake).
  if (options.persons && options.tag) throw new UsageError('give --persons or --tag, not both');
  if (options.tz && !options.cron) throw new UsageError('--tz only applies to --cron');
  const schedule = options.cron ? parseSchedule(options.cron, options.tz ?? 'UTC') : undefined;
  const sinceMs = options.since !== undefined ? parseSince(options.since) : undefined;
  const api = requireApiSettings(config);
  const faces = path.resolve(options.faces);
  const persons = options.persons ? path.resolve(options.persons) : undefined;
  await checkArchiveInputs({ faces, ...(persons ? { persons } : {}) });
  const outDir = path.resolve(options.outDir);
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (err) {
    throw new ConfigError(`--out ${outDir} cannot be created: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, '--out');
  }
  const archiveKey = archiveKeyFor(api.apiUrl, outDir);
  const spec: ArchiveSpec = {
    archiveKey,
    apiUrl: api.apiUrl,
    outDir,
    faces,
    ...(persons ? { persons } : {}),
    ...(options.tag ? { tag: options.tag } : {}),
    ...(sinceMs !== undefined ? { sinceMs } : {}),
    attempts: config.attempts,
    pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE,
    reportRoot: path.resolve(config.reportDir ?? 'idsync-reports'),
  };
  const runLog = log.child({ archive: archiveKey });
  const client = createApiClient(config, api, runLog, options.clientOptions ?? {});
  let redis: RedisHandle | undefined;
  let ledger: Ledger | undefined;
  let host: WorkerHost | undefined;
  let queue: Queue | undefined;
  try {
    await loginWithRetries(client, config.attempts, log, signal);
    runLog.info({ apiUrl: api.apiUrl, username: api.username, out: outDir }, 'archive: logged in');
    if (config.dryRun) {
      out(`dry run: inputs readable, login accepted; nothing was archived (--out ${outDir})`);
      return { exitCode: ExitCode.Ok };
    }
    redis = await openRedis({ redisUrl: config.redisUrl, stateDir: config.stateDir, log: runLog, allowInstall: options.allowInstallRedis });
    ledger = await Ledger.open(config.stateDir, api.apiUrl, { log: runLog });
    const connection = redis.connect('archive');
    const queueName = options.queueName ?? queueNameFor(api.apiUrl);
    queue = new Queue(queueName, { connection, prefix: QUEUE_PREFIX });
    host = await startConfiguredWorkers({ config, redis, client, ledger, apiUrl: api.apiUrl, queue, log: runLog, clock });

    if (schedule) {
      const schedulerId = schedulerIdFor(archiveKey);
      const tick: ArchiveTickJobData = { kind: 'archive-tick', runId: '', row: 0, spec };
      await queue.upsertJobScheduler(schedulerId, { pattern: schedule.pattern, tz: schedule.tz }, {
        name: 'archive-tick',
        data: tick as never,
        opts: { attempts: config.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true },
      });
      out(`archive scheduled: "${schedule.pattern}" (${schedule.tz}), scheduler ${schedulerId}; ${host ? 'working as a worker' : 'no in-process worker (--workers 0)'} until interrupted`);
      await new Promise<void>((resolve) => {
        if (signal.aborted) return resolve();
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
      out('archive: interrupted; the schedule stays registered for the other processes (run again to resume here)');
      return { exitCode: ExitCode.Interrupted };
    }

    const runAtMs = clock.now();
    const runId = archiveRunId(archiveKey, runAtMs);
    const plan = await planArchiveRun({ spec, runId, runAtMs, queue, redis: connection, client, log: runLog, signal });
    const runs = new RunStore(connection, runId);
    const ending = await waitForArchive({ runs, rows: plan.targets.map((t) => t.row), signal, pollMs: options.pollMs ?? 250, queue });
    if (ending === 'interrupted') {
      // A once-run is not resumed under the same id: the next run covers the gap through the watermarks.
      await Promise.all(plan.targets.map((t) => queue!.remove(jobIdFor(runId, t.row)).catch(() => 0)));
    }
    await host?.close(ending === 'interrupted' ? (options.graceMs ?? 30_000) : 60_000);
    host = undefined;
    const summary = await writeArchiveReport({
      redis: connection,
      runId,
      reportDir: config.reportDir ? path.resolve(config.reportDir) : path.join(spec.reportRoot, runId),
      startedAtMs: runAtMs,
      endedAtMs: clock.now(),
      interrupted: ending === 'interrupted',
      missing:
        ending === 'interrupted'
          ? { code: 'E_INTERRUPTED', text: 'not finished before the interrupt; the next run covers it' }
          : { code: 'E_LOST', text: 'its job vanished from the queue (was the queue emptied by hand?); the next run covers it' },
    });
    for (const line of summaryLines(summary)) out(line);
    return { summary, exitCode: exitCodeForOutcome({ failed: summary.counts.failed, rejected: summary.counts.rejected, interrupted: ending === 'interrupted' }) };
  } finally {
    await closeRunResources({ host, queue, client, ledger, redis, graceMs: options.graceMs ?? 30_000 });
  }
}

async function waitForArchive(args: { runs: RunStore; rows: number[]; signal: AbortSignal; pollMs: number; queue: Queue }): Promise<'done' | 'interrupted' | 'lost'> {
  let idle = 0;
  let last = -1;
  for (;;) {
    const done = await args.runs.countResults();
    if (done >= args.rows.length) return 'done';
    if (args.signal.aborted) return 'interrupted';
    if (done !== last) {
      last = done;
      idle = 0;
    } else if (++idle * args.pollMs > 15_000) {
      // This run's own jobs only: a --cron tick or another run in the same queue must not hide a loss.
      if (!(await args.runs.anyRowQueued(args.queue, args.rows))) return 'lost';
      idle = 0;
    }
    await sleep(args.pollMs, undefined, { signal: args.signal }).catch(() => {});
  }
}
