import { realpathSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { Queue } from 'bullmq';
import pLimit from 'p-limit';
import { requireApiSettings, type Config } from '../config/load.ts';
import { ConfigError, UsageError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ExitCode } from '../cli/exit-codes.ts';
import { systemClock, type Clock } from '../pacing/clock.ts';
import { openRedis, type RedisHandle } from '../queue/connection.ts';
import { apiKey, QUEUE_PREFIX, queueNameFor } from '../queue/queue-names.ts';
import { RunStore, type RunMeta } from '../queue/run-store.ts';
import type { WorkerHost } from '../queue/worker-host.ts';
import type { RowResult } from '../report/row-result.ts';
import { defaultDocumentName, parseSidecar, placeOfDrop, type SidecarFields } from '../sources/drop-convention.ts';
import { startFolderWatcher, type FolderWatcher, type ReadyFile } from '../sources/folder-watcher.ts';
import { hashFile } from '../state/file-hash.ts';
import { Ledger } from '../state/ledger.ts';
import { derivePublicId } from '../state/public-id.ts';
import type { UploadJobData } from '../../jobs/job-types.ts';
import { IngestLog, type IngestRecord } from './ingest-log.ts';
import { createApiClient, loginWithRetries, startConfiguredWorkers, closeRunResources } from './job-context.ts';
import { moveIntoFolder, removeFileAndSidecar } from './no-clobber-move.ts';

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
  clock?: Clock;
  /** Heartbeat log line period (default 60 s). */
  heartbeatMs?: number;
  /** How often final results are looked up (default 500 ms). */
  resultPollMs?: number;
  graceMs?: number;
  queueName?: string;
  mounts?: () => string;
  /** Test hooks: every ingest line as written; a veto on a move (false = leave the file where it is, as a crash would). */
  onIngest?: (record: IngestRecord) => void;
  beforeMove?: (file: string, result: RowResult) => boolean | Promise<boolean>;
  /** Called once the folder is being watched. */
  onWatching?: (info: { dir: string; polling: boolean; runId: string }) => void;
}

export interface WatchCounts {
  seen: number;
  uploaded: number;
  skipped: number;
  failed: number;
  rejected: number;
}

export interface WatchRunResult {
  exitCode: number;
  counts: WatchCounts;
  runId: string;
}

/** A file handed to the queue, waiting for its row's final result. */
interface Waiting {
  file: string;
  relPath: string;
  sidecar?: string;
  personId: string;
  sha256: string;
  bytes: number;
}

const RESULT_BATCH = 500;
/** How often the run's meta is read for a fatal error (refused credentials) recorded by a job. */
const FATAL_CHECK_MS = 5_000;
const SIDECAR_MAX_BYTES = 64 * 1024;
/** Files hashed at once while turning ready files into jobs. */
const PREPARE_CONCURRENCY = 4;

/**
 * A watch run is "this folder, against this API": the same command after a restart is the
 * same run, so its job ids (and the results of jobs finished before a crash) are found again.
 * Not per day: a file in flight at midnight must keep its job id across a restart.
 */
export function watchRunId(apiUrl: string, dir: string): string {
  return `watch-${apiKey(apiUrl)}-${createHash('sha256').update(dir).digest('hex').slice(0, 8)}`;
}

/**
 * The job id of a dropped file: one per document (person + publicId, the publicId being derived
 * from the content unless a sidecar names one), so the same file seen again after a restart,
 * or a second copy of it, never becomes a second job while the first is queued.
 */
/**
 * Deterministic per person, document id and content: a restart finds the same job, and two files
 * that name one publicId (sidecars) with different content never share a job (the second then
 * fails as a conflict instead of being moved aside as if it had been uploaded).
 */
export function watchJobId(runId: string, personId: string, publicId: string, sha256: string): string {
  return `${runId}-${personId}-${publicId}-${sha256.slice(0, 16)}`;
}

/** The RunStore row of a job id: 52 bits of its hash, so it stays a safe integer. */
export function watchRow(jobId: string): number {
  return parseInt(createHash('sha256').update(jobId).digest('hex').slice(0, 13), 16);
}

function isFinal(result: RowResult | undefined): result is RowResult {
  return result !== undefined && result.status !== undefined;
}

function requireDir(dir: string, what: string): void {
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // reported below
  }
  if (!isDir) throw new ConfigError(`${what} ${dir} is not an existing folder`, what);
}

/**
 * `idsync watch DIR`: uploads whole files dropped into `DIR/<personId>/` through the same queue,
 * processor and exactly-once upload as `idsync import`, then moves each file (and its sidecar)
 * to the processed or failed folder once its result is final. Runs until interrupted.
 */
export async function runWatch(options: WatchRunOptions): Promise<WatchRunResult> {
  const { config, log, signal } = options;
  const clock = options.clock ?? systemClock;
  const api = requireApiSettings(config);
  if (options.deleteProcessed && options.processedDir) throw new UsageError('--processed-dir and --delete exclude each other: keep one');
  if (config.dryRun) throw new UsageError('--dry-run is not supported by `idsync watch` (it would have nothing to show until files arrive)');
  requireDir(path.resolve(options.dir), 'watch folder');
  // The watcher sees real paths; everything compared with its paths must be real too (a folder
  // reached through a link would otherwise not exclude its own --processed-dir).
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const dir = real(path.resolve(options.dir));
  const processedRoot = real(path.resolve(options.processedDir ?? path.join(dir, '.processed')));
  const failedRoot = real(path.resolve(options.failedDir ?? path.join(dir, '.failed')));
  const settleMs = options.settleMs ?? 2000;
  const runId = watchRunId(api.apiUrl, dir);
  const runLog = log.child({ runId });
  const ingestLog = new IngestLog(config.reportDir ?? path.resolve('idsync-reports', 'watch'), () => clock.now());
  const counts: WatchCounts = { seen: 0, uploaded: 0, skipped: 0, failed: 0, rejected: 0 };
  const startedAt = clock.now();

  const client = createApiClient(config, api, runLog);
  let redis: RedisHandle | undefined;
  let ledger: Ledger | undefined;
  let host: WorkerHost | undefined;
  let queue: Queue | undefined;
  let watcher: FolderWatcher | undefined;
  const waiting = new Map<number, Waiting[]>();
  const preparing = new Set<Promise<void>>();
  const limit = pLimit(PREPARE_CONCURRENCY);
  try {
    await loginWithRetries(client, config.attempts, log, signal);
    runLog.info({ dir, apiUrl: api.apiUrl, username: api.username }, 'watch: logged in');
    redis = await openRedis({ redisUrl: config.redisUrl, stateDir: config.stateDir, log: runLog });
    ledger = await Ledger.open(config.stateDir, api.apiUrl, { log: runLog });
    const connection = redis.connect('watch');
    const runs = new RunStore(connection, runId);
    const queueName = options.queueName ?? queueNameFor(api.apiUrl);
    queue = new Queue(queueName, { connection, prefix: QUEUE_PREFIX });
    const meta: RunMeta = { ...(await runs.getMeta()), runId, command: 'watch', apiUrl: api.apiUrl, manifest: dir, manifestSha256: '', createdAt: startedAt, fatal: undefined, fatalCode: undefined };
    // The meta lets the processor record a fatal error (refused credentials) for this run.
    await runs.saveMeta(meta);

    host = await startConfiguredWorkers({ config, redis, client, ledger, apiUrl: api.apiUrl, queue, log: runLog });
    if (!host) {
      runLog.info({ queue: queueName }, '--workers 0: `idsync worker` processes sharing this Redis do the uploads; this process watches and moves');
    }

    const record = async (r: Omit<IngestRecord, 'time'>) => {
      try {
        await ingestLog.add(r);
      } catch (err) {
        runLog.error({ err, dir: ingestLog.dir }, 'watch: cannot write the ingest log');
      }
      options.onIngest?.({ ...r, time: new Date(clock.now()).toISOString() });
    };

    const relOf = (file: string) => path.relative(dir, file).split(path.sep).join('/');

    /** Moves a file that was never sent to the failed folder, keeping its relative folder, with the reason. */
    const setAside = async (file: ReadyFile, reason: string, personId?: string) => {
      counts.rejected++;
      const destDir = path.join(failedRoot, path.dirname(file.relPath));
      const note = { reason, status: 'rejected', file: file.relPath, time: new Date(clock.now()).toISOString() };
      let movedTo = '';
      try {
        movedTo = await moveIntoFolder(file.path, destDir, { ...(file.sidecar ? { sidecar: file.sidecar } : {}), note: `${JSON.stringify(note, null, 2)}\n` });
      } catch (err) {
        runLog.error({ err, file: file.relPath }, 'watch: cannot set a file aside; it stays where it is');
      }
      runLog.warn({ file: file.relPath, reason }, 'watch: file set aside');
      await record({ file: file.relPath, ...(personId ? { personId } : {}), status: 'rejected', action: 'set-aside', error: reason, movedTo: movedTo ? relOf(movedTo) : '' });
      watcher?.release(file.path);
    };

    /** Moves every file waiting for this row, once its result is final. */
    const finish = async (row: number, result: RowResult) => {
      const files = waiting.get(row) ?? [];
      waiting.delete(row);
      let keepResult = false;
      for (const w of files) {
        if (options.beforeMove && !(await options.beforeMove(w.file, result))) {
          keepResult = true;
          continue;
        }
        const ok = result.status === 'succeeded' || result.status === 'skipped';
        const earlier = result.status === 'succeeded' && (result.finishedAt ?? 0) < startedAt;
        const status: IngestRecord['status'] = earlier ? 'skipped' : ok ? result.status : 'failed';
        if (status === 'succeeded') counts.uploaded++;
        else if (status === 'skipped') counts.skipped++;
        else counts.failed++;
        let movedTo = '';
        try {
          if (ok && options.deleteProcessed) {
            await removeFileAndSidecar(w.file, w.sidecar);
          } else if (ok) {
            movedTo = await moveIntoFolder(w.file, path.join(processedRoot, w.personId), w.sidecar ? { sidecar: w.sidecar } : {});
          } else {
            const note = {
              reason: result.error ?? 'failed',
              errorCode: result.errorCode,
              httpStatus: result.httpStatus,
              attempts: result.attempts,
              personId: w.personId,
              documentId: result.documentId,
              sha256: w.sha256,
              file: w.relPath,
              time: new Date(result.finishedAt ?? clock.now()).toISOString(),
            };
            movedTo = await moveIntoFolder(w.file, path.join(failedRoot, w.personId), { ...(w.sidecar ? { sidecar: w.sidecar } : {}), note: `${JSON.stringify(note, null, 2)}\n` });
          }
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') runLog.warn({ file: w.relPath }, 'watch: the file vanished before it could be moved');
          else runLog.error({ err, file: w.relPath }, 'watch: cannot move the file; it stays and is looked at again after a restart (nothing is uploaded twice)');
        }
        await record({
          file: w.relPath,
          personId: w.personId,
          status,
          action: earlier ? `done-earlier (${result.action})` : result.action,
          ...(result.documentId ? { documentId: result.documentId } : {}),
          sha256: result.sha256 ?? w.sha256,
          bytes: result.bytes ?? w.bytes,
          ...(result.attempts !== undefined ? { attempts: result.attempts } : {}),
          ...(result.httpStatus !== undefined ? { httpStatus: result.httpStatus } : {}),
          ...(result.error ? { error: result.error } : {}),
          movedTo: movedTo ? relOf(movedTo) : '',
        });
        if (status === 'failed') runLog.warn({ file: w.relPath, error: result.error }, 'watch: upload failed for good; file moved to the failed folder');
        else runLog.info({ file: w.relPath, status, documentId: result.documentId }, 'watch: file done');
        watcher?.release(w.file);
      }
      // Once moved, the file is forgotten: the result would only grow Redis over the days.
      if (!keepResult) await runs.deleteResults([result]);
    };

    /** A settled file: check it against the convention, hash it, enqueue its upload (or finish it at once). */
    const prepare = async (file: ReadyFile) => {
      if (signal.aborted) return;
      counts.seen++;
      const place = placeOfDrop(file.relPath);
      if (!place.ok) return setAside(file, place.reason);
      if (file.size === 0) return setAside(file, 'empty file (0 bytes)', place.personId);
      if (file.sidecarProblem) return setAside(file, file.sidecarProblem, place.personId);
      let fields: SidecarFields = {};
      if (file.sidecar) {
        try {
          const info = await stat(file.sidecar);
          if (info.size > SIDECAR_MAX_BYTES) throw new Error(`sidecar is larger than ${SIDECAR_MAX_BYTES} bytes`);
          fields = parseSidecar(await readFile(file.sidecar, 'utf8'));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
            // The sidecar went away after settling: its removal is a change; look again later.
            watcher?.release(file.path);
            return;
          }
          return setAside(file, (err as Error).message, place.personId);
        }
      }
      let hashed: { sha256: string; bytes: number };
      try {
        hashed = await hashFile(file.path);
      } catch (err) {
        runLog.warn({ err, file: file.relPath }, 'watch: cannot read a settled file; it is looked at again when it changes');
        watcher?.release(file.path);
        return;
      }
      const publicId = fields.publicId ?? derivePublicId(place.personId, hashed.sha256);
      const jobId = watchJobId(runId, place.personId, publicId, hashed.sha256);
      const row = watchRow(jobId);
      const entry: Waiting = { file: file.path, relPath: file.relPath, personId: place.personId, sha256: hashed.sha256, bytes: hashed.bytes, ...(file.sidecar ? { sidecar: file.sidecar } : {}) };
      const already = waiting.get(row);
      if (already) {
        // A second copy of a document already on its way: it shares that job and its result.
        already.push(entry);
        return;
      }
      waiting.set(row, [entry]);
      try {
        await queueFile(row, jobId, entry, place.personId, file, fields);
      } catch (err) {
        // Not queued: forget it here, or later copies would wait on a job that never comes.
        waiting.delete(row);
        throw err;
      }
    };

    const queueFile = async (row: number, jobId: string, entry: Waiting, personId: string, file: ReadyFile, fields: SidecarFields) => {
      const prior = await runs.getResult(row);
      if (isFinal(prior)) {
        // Finished before a restart, but the move did not happen: move it now, send nothing.
        await finish(row, prior);
        return;
      }
      const data: UploadJobData = {
        kind: 'upload',
        runId,
        row,
        item: {
          personId,
          file: entry.file,
          name: fields.name ?? defaultDocumentName(path.basename(file.path)),
          ...(fields.description ? { description: fields.description } : {}),
          ...(fields.publicId ? { publicId: fields.publicId } : {}),
        },
        checkExisting: config.checkExisting,
      };
      // Same job id as before a restart: BullMQ adds nothing while that job still exists.
      await queue!.add('upload', data, { jobId, attempts: config.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true });
      runLog.debug({ file: file.relPath, jobId }, 'watch: queued');
    };

    const onReady = (file: ReadyFile) => {
      const p: Promise<void> = limit(() => prepare(file))
        .catch((err: unknown) => {
          runLog.error({ err, file: file.relPath }, 'watch: cannot queue a file; it is looked at again when it changes or after a restart');
          watcher?.release(file.path);
        })
        .finally(() => preparing.delete(p));
      preparing.add(p);
    };

    const pollResults = async () => {
      const rows = [...waiting.keys()];
      for (let i = 0; i < rows.length; i += RESULT_BATCH) {
        const batch = rows.slice(i, i + RESULT_BATCH);
        const results = await runs.getResults(batch);
        for (let j = 0; j < batch.length; j++) {
          const result = results[j];
          if (isFinal(result) && waiting.has(batch[j]!)) await finish(batch[j]!, result);
        }
      }
    };

    const exclude = [processedRoot, failedRoot];
    watcher = await startFolderWatcher({
      dir,
      settleMs,
      poll: options.poll === true,
      pollIntervalMs: options.pollIntervalMs ?? 2000,
      exclude,
      clock,
      log: runLog,
      ...(options.mounts ? { mounts: options.mounts } : {}),
      onReady,
    });
    options.onWatching?.({ dir: watcher.dir, polling: watcher.polling, runId });

    const heartbeatMs = options.heartbeatMs ?? 60_000;
    const resultPollMs = options.resultPollMs ?? 500;
    let lastBeat = clock.now();
    let lastFatalCheck = clock.now();
    let fatal: string | undefined;
    while (!signal.aborted) {
      await clock.sleep(resultPollMs, signal).catch(() => undefined);
      if (signal.aborted) break;
      try {
        await pollResults();
      } catch (err) {
        runLog.error({ err }, 'watch: cannot read results (is Redis down?); trying again');
      }
      if (clock.now() - lastFatalCheck >= FATAL_CHECK_MS) {
        lastFatalCheck = clock.now();
        const current = await runs.getMeta().catch(() => undefined);
        fatal = current?.fatal;
        if (fatal) break;
        // Keeps the run's keys alive however long the watch runs.
        await runs.saveMeta(current ?? meta).catch(() => undefined);
      }
      if (clock.now() - lastBeat >= heartbeatMs) {
        lastBeat = clock.now();
        const pendingFiles = [...waiting.values()].reduce((n, w) => n + w.length, 0);
        runLog.info({ ...counts, pending: pendingFiles + watcher.pending() + preparing.size }, 'watch heartbeat');
      }
    }

    runLog.info('watch: stopping: no new files are taken; finishing in-flight uploads');
    await watcher.close();
    await Promise.allSettled([...preparing]);
    await host?.close(options.graceMs ?? 30_000);
    host = undefined;
    await pollResults().catch((err: unknown) => runLog.error({ err }, 'watch: cannot read the last results'));
    await ingestLog.flush();
    const left = [...waiting.values()].reduce((n, w) => n + w.length, 0);
    runLog.info({ ...counts, handedBack: left }, left > 0 ? 'watch stopped: unfinished files stay in the folder and are taken again by the next start' : 'watch stopped');
    if (fatal) {
      runLog.error({ fatal }, 'watch: the run stopped on a fatal error');
      return { exitCode: ExitCode.CannotStart, counts, runId };
    }
    return { exitCode: ExitCode.Interrupted, counts, runId };
  } finally {
    await watcher?.close().catch(() => undefined);
    await closeRunResources({ host, queue, client, ledger, redis, graceMs: options.graceMs ?? 30_000 });
  }
}
