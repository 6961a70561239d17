import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import pLimit from 'p-limit';
import type { Config } from '../../config/load.ts';
import { placePath } from '../../folder-handle.ts';
import { formatDuration } from '../../config/duration.ts';
import { ConfigError, UsageError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { Clock } from '../../pacing/clock.ts';
import { moveIntoFolder, removeFileAndSidecar } from '../../outputs/no-clobber-move.ts';
import { IngestLog, type IngestRecord } from '../../report/ingest-log.ts';
import type { RowResult } from '../../report/row-result.ts';
import { openDropped, readDroppedText } from '../../sources/dropped-file.ts';
import { sha256OfHandle } from '../../sources/file-hash.ts';
import { startFolderWatcher, type FolderWatcher, type ReadyFile } from '../../sources/folder-watcher.ts';
import { rowJobId, runQueueName } from '../../store/keys.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { budgetedJob } from '../../engine/retry-budget.ts';
import { ownerNow, workerPool } from '../../engine/run-services.ts';
import { Session } from '../../engine/session.ts';
import { destinationFolder } from './destination-folders.ts';
import { returnFailedFiles } from './failed-files.ts';
import { OutageNotice } from './outage-notice.ts';
import { Ingest, SIDECAR_MAX_BYTES, watchRunId, type WatchCounts } from './ingest.ts';

export { watchRunId, watchRow, type WatchCounts } from './ingest.ts';

export interface WatchRunOptions {
  dir: string;
  config: Config;
  log: Logger;
  /** Aborted on the first SIGINT/SIGTERM. */
  signal: AbortSignal;
  /** Stable size and mtime needed before a file is taken (default 2000). */
  settleMs?: number;
  poll?: boolean;
  pollIntervalMs?: number;
  /** Default `<dir>/.processed`. */
  processedDir?: string;
  /** Delete uploaded files instead of moving them. */
  deleteProcessed?: boolean;
  /** Default `<dir>/.failed`. */
  failedDir?: string;
  /** Put the failed folder's files back into the drop folder (notes removed) before watching. */
  retryFailed?: boolean;
  clock?: Clock;
  /** Heartbeat log line period (default 60 s). */
  heartbeatMs?: number;
  /** How long the API must fail before the log says it is down (default 10 s). */
  apiDownNoticeMs?: number;
  /** How often final results are looked up (default 500 ms). */
  resultPollMs?: number;
  graceMs?: number;
  mounts?: () => string;
  /** Called with every ingest line as it is written (an embedding program's progress). */
  onIngest?: (record: IngestRecord) => void;
  /** Called once the folder is being watched. */
  onWatching?: (info: { dir: string; polling: boolean; runId: string }) => void;
}

export interface WatchRunResult {
  exitCode: number;
  counts: WatchCounts;
  runId: string;
}

/** How often the run's meta is read for a fatal error (refused credentials) recorded by a job. */
const FATAL_CHECK_MS = 5_000;
/** The API counts as down once this process's requests met only outages this long (a flaky server is not down). */
const API_DOWN_NOTICE_MS = 10_000;
/** Files hashed at once while turning ready files into jobs. */
const PREPARE_CONCURRENCY = 4;

function requireDir(dir: string, what: string): void {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new ConfigError(`${what} ${dir} is not an existing folder`, what);
}

/** What happens to a file while the API is down, for the log. */
function retryPromise(config: Config): string {
  return config.retryBudgetMs > 0 ? `until ${formatDuration(config.retryBudgetMs)} after their first failure (--retry-budget)` : `up to ${config.attempts} times (--attempts; --retry-budget 0)`;
}

/** The watcher sees real paths; everything compared with its paths must be real too. */
function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/**
 * `idsync watch DIR`: uploads whole files dropped into `DIR/<personId>/` through the same engine,
 * job kind and exactly-once upload as `idsync import`, then moves each file (and its sidecar) to
 * the processed or failed folder once its result is final. Runs until interrupted.
 */
export async function runWatch(options: WatchRunOptions): Promise<WatchRunResult> {
  const { config, signal } = options;
  if (options.deleteProcessed && options.processedDir) throw new UsageError('--processed-dir and --delete exclude each other: keep one');
  if (config.dryRun) throw new UsageError('--dry-run is not supported by `idsync watch` (it would have nothing to show until files arrive)');
  requireDir(path.resolve(options.dir), 'watch folder');
  // A folder reached through a link would otherwise not exclude its own --processed-dir.
  const dir = real(path.resolve(options.dir));
  // Its workers would refuse every file: said at start (exit 2), not file by file.
  config.allowRead?.requireAtStart('the watch folder', options.dir, dir, 'watch a folder inside it, or allow it', '--allow-read');
  // Checked before anything else: a link planted as .failed or .processed refuses the start (exit 2).
  const processed = options.deleteProcessed ? { root: dir, levels: ['.processed'] } : destinationFolder(dir, options.dir, options.processedDir, '.processed', '--processed-dir');
  const failed = destinationFolder(dir, options.dir, options.failedDir, '.failed', '--failed-dir');
  const processedRoot = placePath(processed);
  const failedRoot = placePath(failed);
  const session = await Session.open({ config, log: options.log, signal, ...(options.clock ? { clock: options.clock } : {}) });
  const clock = session.clock;
  const runId = watchRunId(session.store.keys.api, dir);
  const log = options.log.child({ runId });
  let watcher: FolderWatcher | undefined;
  const preparing = new Set<Promise<void>>();
  try {
    const run = session.store.run(runId);
    const startedAt = clock.now();
    if (options.retryFailed) {
      const back = await returnFailedFiles(failed, dir, log);
      log.info({ returned: back.returned, left: back.left, failedDir: failedRoot }, `watch --retry-failed: ${back.returned} file(s) put back into the drop folder`);
    }
    const previous = await run.getMeta();
    await run.saveMeta({ runId, command: 'watch', apiUrl: session.api.apiUrl, input: dir, createdAt: previous?.createdAt ?? startedAt, startedAt, state: 'running', dense: false, owner: ownerNow(startedAt) });
    const queue = session.queue(runQueueName(runId));
    await queue.resume();
    const graceMs = options.graceMs ?? 30_000;
    const pool = config.workers > 0 ? workerPool(session, graceMs, 'watch') : undefined;
    if (pool) await pool.serve(queue.name);
    else log.info('--workers 0: `idsync worker` processes sharing this Redis do the uploads; this process watches and moves');

    // Passing failures (an API outage) are retried on a time budget, not a count: see retry-budget.ts.
    const budget = config.retryBudgetMs > 0 ? budgetedJob({ budgetMs: config.retryBudgetMs, maxDelayMs: config.retryMaxDelayMs }) : undefined;
    // As import does (run-import-export.ts): a Redis that lost the state this state dir relied on is not trusted alone.
    const checkExisting = config.checkExisting || session.redisForgot;
    if (checkExisting && !config.checkExisting) {
      log.warn({ stateDir: config.stateDir, redis: session.redis.where }, 'this Redis holds none of the state this state dir worked with for this API before (Redis emptied or replaced, or another --redis-prefix): each file\'s document is looked up on the server before it is sent (--check-existing) until the watch stops with every file done');
    }
    const ingestLog = new IngestLog(config.reportDir ?? path.resolve('idsync-reports', 'watch'), () => clock.now());
    const ingest = new Ingest(
      {
        readSidecar: (ref) => readDroppedText(ref, SIDECAR_MAX_BYTES),
        async hash(ref) {
          const opened = await openDropped(ref);
          try {
            return await sha256OfHandle(opened.handle);
          } finally {
            await opened.close();
          }
        },
        results: (rows) => run.getResults(rows),
        forget: (result) => run.forget(result),
        async queueUpload(row, payload) {
          const jobId = rowJobId(row);
          // Same job id as before a restart: BullMQ adds nothing while that job still exists.
          await queue.add('upload', { p: payload, m: session.signer.sign(queue.name, jobId, 'upload', payload), ...budget?.hint } as never, {
            jobId,
            attempts: budget?.opts.attempts ?? config.attempts,
            backoff: budget?.opts.backoff ?? { type: 'idsync' },
            removeOnComplete: true,
            removeOnFail: true,
          });
        },
        moveInto: (file, destDir, extra) => moveIntoFolder(file, destDir, extra),
        remove: (file, sidecar) => removeFileAndSidecar(file, sidecar),
        async record(line) {
          try {
            await ingestLog.add(line);
          } catch (err) {
            log.error({ err, dir: ingestLog.dir }, 'watch: cannot write the ingest log');
          }
          options.onIngest?.({ ...line, time: new Date(clock.now()).toISOString() });
        },
        release: (file) => watcher?.release(file),
        now: () => clock.now(),
        log,
      },
      { dir, processed, failed, deleteProcessed: options.deleteProcessed === true, checkExisting, runId, startedAt },
    );

    const limit = pLimit(PREPARE_CONCURRENCY);
    const onReady = (file: ReadyFile) => {
      if (signal.aborted) return;
      const p: Promise<void> = limit(() => ingest.take(file))
        .catch((err: unknown) => {
          log.error({ err, file: file.relPath }, 'watch: cannot queue a file; it is looked at again when it changes or after a restart');
          watcher?.release(file.path);
        })
        .finally(() => preparing.delete(p));
      preparing.add(p);
    };

    watcher = await startFolderWatcher({
      dir,
      settleMs: options.settleMs ?? 2000,
      poll: options.poll === true,
      pollIntervalMs: options.pollIntervalMs ?? 2000,
      exclude: [processedRoot, failedRoot],
      clock,
      log,
      ...(options.mounts ? { mounts: options.mounts } : {}),
      onReady,
    });
    options.onWatching?.({ dir: watcher.dir, polling: watcher.polling, runId });

    const heartbeatMs = options.heartbeatMs ?? 60_000;
    const resultPollMs = options.resultPollMs ?? 500;
    let lastBeat = clock.now();
    let lastFatalCheck = clock.now();
    let fatal: string | undefined;
    let cancelled = false;
    const outage = new OutageNotice(options.apiDownNoticeMs ?? API_DOWN_NOTICE_MS, log, retryPromise(config));
    while (!signal.aborted) {
      await clock.sleep(resultPollMs, signal).catch(() => undefined);
      if (signal.aborted) break;
      try {
        await ingest.poll();
      } catch (err) {
        log.error({ err }, 'watch: cannot read results (is Redis down?); trying again');
      }
      if (clock.now() - lastFatalCheck >= FATAL_CHECK_MS) {
        lastFatalCheck = clock.now();
        const meta = await run.getMeta().catch(() => undefined);
        fatal = meta?.fatal;
        // `idsync cancel --force` from another terminal emptied the queue: stop watching.
        cancelled = meta?.state === 'cancelled';
        if (fatal || cancelled) break;
        // Keeps the run's keys alive and its owner fresh however long the watch runs.
        await run.updateMeta({ owner: ownerNow(lastFatalCheck) }).catch(() => undefined);
      }
      const health = session.client.health();
      const down = outage.check(health, clock.now());
      if (clock.now() - lastBeat >= heartbeatMs) {
        lastBeat = clock.now();
        const beat = { ...ingest.counts, pending: ingest.waitingFiles() + watcher.pending() + preparing.size };
        if (down === undefined) log.info(beat, 'watch heartbeat');
        else {
          const { fields, message } = outage.heartbeat(health, down, clock.now());
          log.warn({ ...beat, ...fields }, message);
        }
      }
    }

    log.info('watch: stopping: no new files are taken; finishing in-flight uploads');
    await watcher.close();
    await Promise.allSettled([...preparing]);
    await pool?.close(graceMs);
    await ingest.poll().catch((err: unknown) => log.error({ err }, 'watch: cannot read the last results'));
    await ingestLog.flush();
    const left = ingest.waitingFiles();
    // Stopped: no worker goes on with its queued jobs; the next start takes them (same rows).
    // Cancelled: what was queued meanwhile goes too; the files stay and the next start takes them.
    if (cancelled) await queue.obliterate({ force: true }).catch(() => undefined);
    else await queue.pause().catch(() => undefined);
    await run.updateMeta({ state: cancelled ? 'cancelled' : 'stopped', endedAt: clock.now(), owner: undefined }).catch(() => undefined);
    if (cancelled) log.warn('watch: the run was cancelled from elsewhere (idsync cancel); stopping');
    if (left === 0 && !fatal && !cancelled) await session.rememberRedisState();
    log.info({ ...ingest.counts, handedBack: left }, left > 0 ? 'watch stopped: unfinished files stay in the folder and are taken again by the next start' : 'watch stopped');
    if (fatal) {
      log.error({ fatal }, 'watch: the run stopped on a fatal error');
      return { exitCode: ExitCode.CannotStart, counts: ingest.counts, runId };
    }
    return { exitCode: ExitCode.Interrupted, counts: ingest.counts, runId };
  } finally {
    await watcher?.close().catch(() => undefined);
    await session.close();
  }
}
