import path from 'node:path';
import type { ApiClientOptions } from '../../api/client.ts';
import { requireApiSettings, type Config } from '../../config/load.ts';
import { UsageError } from '../../errors.ts';
import { createOutAtStart } from '../../outputs/out-dir.ts';
import type { Logger } from '../../log.ts';
import type { Clock } from '../../pacing/clock.ts';
import type { RunSummary } from '../../report/report-writer.ts';
import { checkArchiveInputs } from '../../sources/archive-targets.ts';
import { CONTROL_QUEUE } from '../../store/keys.ts';
import { runBatch } from '../../engine/batch-run.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { workerPool } from '../../engine/run-services.ts';
import { Session } from '../../engine/session.ts';
import type { ArchiveSpec, ArchiveTickPayload } from '../../../jobs/archive-job-data.ts';
import { ArchivePlan, archiveKeyFor, archiveRunId } from '../../../jobs/archive-plan.ts';
import { parseSchedule, parseSince } from './archive-schedule.ts';
import { removeLeftovers } from '../import-export/run-import-export.ts';

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
  clock?: Clock;
  clientOptions?: Partial<ApiClientOptions>;
  pageSize?: number;
  pollMs?: number;
  graceMs?: number;
  /** How often `--cron` looks for new runs to serve. */
  servePollMs?: number;
  allowInstallRedis?: boolean;
}

export interface ArchiveRunResult {
  exitCode: number;
  /** The run's summary (once); undefined for --cron, which only stops when interrupted. */
  summary?: RunSummary;
}

/** The job scheduler of an archive (one per API and --out, whoever registers it). */
export function schedulerIdFor(archiveKey: string): string {
  return `archive-${archiveKey}`;
}

/**
 * `idsync archive`: once (one run, worked by this process and/or `idsync worker` processes;
 * waits, reports, exits) or with --cron (a BullMQ job scheduler whose ticks plan the runs, on
 * whichever worker takes them; this process serves as a worker until interrupted).
 */
export async function runArchive(options: ArchiveRunOptions): Promise<ArchiveRunResult> {
  const { config } = options;
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
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
  await createOutAtStart(outDir, config.allowWrite);
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
  const log = options.log.child({ archive: archiveKey });
  const session = await Session.open({
    config,
    log,
    signal: options.signal,
    state: !config.dryRun,
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.clientOptions ? { clientOptions: options.clientOptions } : {}),
    ...(options.allowInstallRedis !== undefined ? { allowInstallRedis: options.allowInstallRedis } : {}),
  });
  try {
    if (config.dryRun) {
      out(`dry run: inputs readable, login accepted; nothing was archived (--out ${outDir})`);
      return { exitCode: ExitCode.Ok };
    }
    if (schedule) {
      const schedulerId = schedulerIdFor(archiveKey);
      const tick: ArchiveTickPayload = { spec };
      const control = session.queue(CONTROL_QUEUE);
      await control.upsertJobScheduler(schedulerId, { pattern: schedule.pattern, tz: schedule.tz }, {
        name: 'archive-tick',
        // A scheduler's jobs are named `repeat:<schedulerId>:<millis>`: signed for the scheduler (see JobSigner).
        data: { p: tick, m: session.signer.sign(CONTROL_QUEUE, `repeat:${schedulerId}`, 'archive-tick', tick) } as never,
        opts: { attempts: config.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true },
      });
      const graceMs = options.graceMs ?? 30_000;
      out(`archive scheduled: "${schedule.pattern}" (${schedule.tz}), scheduler ${schedulerId}; ${config.workers > 0 ? 'working as a worker' : 'no in-process worker (--workers 0)'} until interrupted`);
      if (config.workers > 0) {
        const pool = workerPool(session, graceMs, 'archive');
        await pool.serveRuns(() => session.store.listRuns(), { pollMs: options.servePollMs ?? 2000, signal: options.signal, graceMs });
      } else {
        await session.clock.sleep(Number.MAX_SAFE_INTEGER, options.signal).catch(() => undefined);
      }
      out('archive: interrupted; the schedule stays registered for the other processes (run again to resume here)');
      return { exitCode: ExitCode.Interrupted };
    }

    await removeLeftovers(outDir, log);
    const runAtMs = session.clock.now();
    const runId = archiveRunId(archiveKey, runAtMs);
    const plan = ArchivePlan.fresh(spec, runId, runAtMs, session.store, session.client);
    const result = await runBatch({
      session,
      plan,
      signal: options.signal,
      out,
      reportDir: config.reportDir ? path.resolve(config.reportDir) : path.join(spec.reportRoot, runId),
      retryHint: () => "failed faces and persons are tried again by the next run; a failed person's window was not skipped (its watermark did not move)",
      ...(options.pollMs !== undefined ? { pollMs: options.pollMs } : {}),
      ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
    });
    return { summary: result.summary, exitCode: result.exitCode };
  } finally {
    await session.close();
  }
}
