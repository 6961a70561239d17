import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { Queue } from 'bullmq';
import type { ApiClient } from '../api/client.ts';
import { requireApiSettings, type Config } from '../config/load.ts';
import { ConfigError, RowInvalidError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ExitCode, exitCodeForOutcome } from '../cli/exit-codes.ts';
import { openRedis, type RedisHandle } from '../queue/connection.ts';
import { jobIdFor, QUEUE_PREFIX, queueNameFor } from '../queue/queue-names.ts';
import { RunStore, type RunMeta } from '../queue/run-store.ts';
import type { WorkerHost } from '../queue/worker-host.ts';
import { createProgress } from '../report/progress.ts';
import { ReportWriter, type FailedCsvFormat, type RunSummary } from '../report/report-writer.ts';
import { RunReport } from './run-report.ts';
import type { RowResult } from '../report/row-result.ts';
import { EXPORT_KNOWN_COLUMNS, EXPORT_REQUIRED_COLUMNS, toExportItem, type ExportItem } from '../sources/export-items.ts';
import { IMPORT_KNOWN_COLUMNS, IMPORT_REQUIRED_COLUMNS, toImportItem, type ImportItem } from '../sources/import-items.ts';
import { hashManifest, readManifest, type ManifestHeader, type ManifestReadOptions, type ManifestRecord } from '../sources/manifest-reader.ts';
import { Ledger } from '../state/ledger.ts';
import type { JobData } from '../../jobs/job-types.ts';
import { collectOldGarbage, ENQUEUE_COLLECT_EVERY_ROWS } from '../memory.ts';
import { createApiClient, loginWithRetries, startConfiguredWorkers, closeRunResources } from './job-context.ts';
import { runIdFor } from './run-id.ts';

export type JobCommand = 'import' | 'export';

export interface JobRunOptions {
  command: JobCommand;
  manifest: string;
  /** --out of export. */
  outDir?: string;
  config: Config;
  log: Logger;
  /** Aborted on the first Ctrl-C/SIGTERM. */
  signal: AbortSignal;
  /** Human-readable lines (the summary); stdout by default. */
  out?: (line: string) => void;
  /** Test hooks. */
  queueName?: string;
  allowInstallRedis?: boolean;
  tty?: boolean;
  graceMs?: number;
  pollMs?: number;
  /** How long nothing may move before idsync checks that the run's jobs still exist. */
  idleCheckMs?: number;
}

export interface JobRunResult {
  summary: RunSummary;
  exitCode: number;
}

const BATCH = 500;
/**
 * The first batch is small and each next one twice as large, up to BATCH: workers get their first
 * jobs after 32 rows instead of 500, and the enqueue, whose first rows run cold (unoptimised
 * code, ~100 µs a row), holds the event loop in shorter stretches while the first uploads start.
 */
const FIRST_BATCH = 32;

interface CommandSpec {
  required: readonly string[];
  known: readonly string[];
  jobName: 'upload' | 'download';
  /** How a failed row is written to failed.csv (see ReportWriter). */
  failedRow?: (manifestDir: string) => (values: Record<string, string>) => Record<string, string>;
  validate(record: ManifestRecord, manifestDir: string): Promise<ImportItem | ExportItem>;
}

const SPECS: Record<JobCommand, CommandSpec> = {
  import: {
    required: IMPORT_REQUIRED_COLUMNS,
    known: IMPORT_KNOWN_COLUMNS,
    jobName: 'upload',
    validate: toImportItem,
    failedRow: (manifestDir) => (values) => (values.file?.trim() ? { ...values, file: path.resolve(manifestDir, values.file.trim()) } : values),
  },
  export: { required: EXPORT_REQUIRED_COLUMNS, known: EXPORT_KNOWN_COLUMNS, jobName: 'download', validate: async (r) => toExportItem(r) },
};

/** The cells of a row as the report shows them for a row that never became a job. */
function idsOf(values: Record<string, string>): Partial<RowResult> {
  const pick = (k: string) => (values[k] ?? '').trim() || undefined;
  const out: Partial<RowResult> = {};
  for (const k of ['personId', 'faceId', 'detectionId', 'documentId', 'file', 'output'] as const) {
    const v = pick(k);
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  const publicId = pick('publicId');
  if (publicId && !out.documentId) out.documentId = publicId;
  return out;
}

async function readHeader(manifest: string, required: readonly string[], read: ManifestReadOptions): Promise<ManifestHeader> {
  let header: ManifestHeader = { columns: [], labels: [], delimiter: ',' };
  for await (const _ of readManifest(manifest, required, { ...read, onHeader: (h) => (header = h) })) break;
  return header;
}

/**
 * `idsync import` and `idsync export`: validate the manifest, enqueue one job per valid row
 * (rejecting invalid rows into the report), let workers (in this process and/or elsewhere)
 * do the work, wait for every row to have a result, then write the report in manifest order.
 */
export async function runJobCommand(options: JobRunOptions): Promise<JobRunResult> {
  const { config, log, signal, command } = options;
  const spec = SPECS[command];
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  // Local problems first: they are the cheapest to find and the likeliest.
  const manifest = path.resolve(options.manifest);
  const manifestDir = path.dirname(manifest);
  // Every read of the manifest reads it alike: the delimiter of its header, in its encoding.
  const read: ManifestReadOptions = { known: spec.known, delimiter: config.delimiter, encoding: config.encoding };
  const manifestSha256 = await hashManifest(manifest, read);
  const header = await readHeader(manifest, spec.required, read);
  read.delimiter = header.delimiter;
  const columns = header.columns;
  const failedFormat = { delimiter: header.delimiter, header: header.labels };
  const api = requireApiSettings(config);
  let outDir: string | undefined;
  if (command === 'export') {
    if (!options.outDir) throw new ConfigError('export needs --out DIR', '--out');
    outDir = path.resolve(options.outDir);
    try {
      mkdirSync(outDir, { recursive: true });
    } catch (err) {
      throw new ConfigError(`--out ${outDir} cannot be created: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, '--out');
    }
  }
  const runId = runIdFor({ command, apiUrl: api.apiUrl, manifest, manifestSha256, ...(outDir ? { outDir } : {}) });
  const reportDir = config.reportDir ?? path.resolve('idsync-reports', runId);
  const runLog = log.child({ runId });
  const startedAt = new Date();

  const client = createApiClient(config, api, runLog);
  let redis: RedisHandle | undefined;
  let ledger: Ledger | undefined;
  let host: WorkerHost | undefined;
  let queue: Queue | undefined;
  let report: RunReport | undefined;
  // Redis (the private one takes a moment to start) is opened while the login is under way; a
  // refused login still comes first, and the Redis opened for nothing is closed below.
  const redisOpening = config.dryRun ? undefined : openRedis({ redisUrl: config.redisUrl, stateDir: config.stateDir, log: runLog, allowInstall: options.allowInstallRedis });
  redisOpening?.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
  try {
    await loginWithRetries(client, config.attempts, log, signal);
    runLog.info({ manifest, apiUrl: api.apiUrl, username: api.username }, `${command}: logged in`);
    if (config.dryRun) return await dryRun({ spec, manifest, manifestDir, columns, read, failedFormat, reportDir, runId, command, startedAt, out });

    redis = await redisOpening!;
    runLog.info({ redis: redis.where }, 'queue store ready');
    ledger = await Ledger.open(config.stateDir, api.apiUrl, { log: runLog });
    const connection = redis.connect('run');
    const runs = new RunStore(connection, runId);
    const queueName = options.queueName ?? queueNameFor(api.apiUrl);
    queue = new Queue(queueName, { connection, prefix: QUEUE_PREFIX });

    const previous = await runs.getMeta();
    const meta: RunMeta = previous
      ? { ...previous, fatal: undefined, fatalCode: undefined }
      : { runId, command, apiUrl: api.apiUrl, manifest, manifestSha256, createdAt: startedAt.getTime() };
    await runs.saveMeta(meta);
    if (previous) runLog.info('resuming an earlier run of this command on this manifest: rows already done are skipped');

    host = await startConfiguredWorkers({ config, redis, client, ledger, apiUrl: api.apiUrl, queue, log: runLog });
    if (!host) {
      runLog.info({ queue: queueName }, '--workers 0: waiting for `idsync worker` processes sharing this Redis to do the work');
    }

    const invocationStart = Date.now();
    const enqueue = await enqueueManifest({ spec, manifest, manifestDir, read, runs, queue, runId, config, outDir, signal, command, log: runLog, fresh: previous === undefined });
    await runs.saveMeta({ ...meta, total: enqueue.total });
    runLog.info({ rows: enqueue.total, queued: enqueue.queued, rejected: enqueue.rejected, alreadyDone: enqueue.alreadyDone }, 'manifest queued');

    // Written while the run goes on (rows in manifest order as their results come in).
    report = new RunReport({
      manifest,
      requiredColumns: spec.required,
      columns,
      knownColumns: spec.known,
      read,
      failedFormat,
      ...(spec.failedRow ? { failedRow: spec.failedRow(manifestDir) } : {}),
      runs,
      reportDir,
      invocationStart,
      action: spec.jobName,
      idsOf,
      log: runLog,
    });
    const ending = signal.aborted
      ? 'interrupted'
      : await waitForRun({ runs, queue, total: enqueue.total, signal, log: runLog, tty: options.tty, pollMs: options.pollMs ?? 250, command, runId, workersElsewhere: host === undefined, idleCheckMs: options.idleCheckMs ?? 10_000, onResults: () => void report!.advance(), ...(host ? { local: host } : {}) });
    await host?.close(ending === 'interrupted' ? (options.graceMs ?? 30_000) : 60_000);
    host = undefined;
    const fatal = (await runs.getMeta())?.fatal;

    const interrupted = ending === 'interrupted';
    const finishing = report;
    report = undefined; // finish() keeps what it could write if it fails: nothing left to discard
    const summary = await finishing.finish(
      interrupted
        ? { code: 'E_INTERRUPTED', text: 'not finished before the interrupt; run the same command again to resume' }
        : ending === 'fatal'
          ? { code: 'E_FATAL', text: `not done: the run stopped: ${fatal ?? 'fatal error'}` }
          : { code: 'E_LOST', text: 'its job vanished from the queue (was the queue emptied by hand?); run the same command again to retry it' },
      (endedAt) => ({ runId, command, manifest, startedAt: startedAt.toISOString(), endedAt: endedAt.toISOString(), interrupted, seconds: (endedAt.getTime() - startedAt.getTime()) / 1000 }),
    );
    printSummary(summary, out);
    if (ending === 'fatal') {
      out(`idsync: the run stopped: ${fatal}`);
      return { summary, exitCode: ExitCode.CannotStart };
    }
    return { summary, exitCode: exitCodeForOutcome({ failed: summary.counts.failed, rejected: summary.counts.rejected, interrupted: ending === 'interrupted' }) };
  } finally {
    await report?.discard(); // the run ended in an error before its report was finished
    redis ??= await redisOpening?.catch(() => undefined);
    await closeRunResources({ host, queue, client, ledger, redis, graceMs: options.graceMs ?? 30_000 });
  }
}

async function enqueueManifest(args: {
  spec: CommandSpec;
  manifest: string;
  manifestDir: string;
  read: ManifestReadOptions;
  runs: RunStore;
  queue: Queue;
  runId: string;
  config: Config;
  outDir: string | undefined;
  signal: AbortSignal;
  command: JobCommand;
  log: Logger;
  /** A run Redis has never seen has no earlier results to look up. */
  fresh: boolean;
}): Promise<{ total: number; queued: number; rejected: number; alreadyDone: number }> {
  const { spec, runs, queue, runId, config } = args;
  let total = 0;
  let queued = 0;
  let rejected = 0;
  let alreadyDone = 0;
  type Checked = Array<{ r: ManifestRecord; item: ImportItem | ExportItem | undefined; err: unknown }>;
  const validate = (batch: ManifestRecord[]): Promise<Checked> =>
    Promise.all(
      batch.map((r) =>
        spec.validate(r, args.manifestDir).then(
          (item) => ({ r, item, err: undefined }),
          (err: unknown) => ({ r, item: undefined, err }),
        ),
      ),
    );
  const write = async (batch: ManifestRecord[], checked: Checked) => {
    const prior = args.fresh ? [] : await runs.getResults(batch.map((r) => r.row));
    const outputClaims = checked.flatMap(({ r, item }) => (item && 'output' in item ? [{ row: r.row, output: item.output }] : []));
    const outputOwners = await runs.claimOutputs(outputClaims);
    const rejectedResults: RowResult[] = [];
    const redo: RowResult[] = [];
    const jobs: Array<{ name: string; data: JobData; opts: Record<string, unknown> }> = [];
    checked.forEach(({ r, item, err: invalid }, i) => {
      let err = invalid;
      const before = prior[i];
      if (before && (before.status === 'succeeded' || before.status === 'skipped')) {
        alreadyDone++;
        return;
      }
      if (before) redo.push(before);
      const owner = outputOwners.get(r.row);
      if (!err && owner !== undefined) err = new RowInvalidError(`output ${(item as ExportItem).output} is also the output of row ${owner}; give one of them another output`);
      if (err) {
        if (!(err instanceof RowInvalidError)) throw err;
        rejected++;
        rejectedResults.push({ row: r.row, status: 'rejected', action: 'validate', ...idsOf(r.values), error: err.message, errorCode: err.code, finishedAt: Date.now() });
        return;
      }
      const data: JobData =
        args.command === 'import'
          ? { kind: 'upload', runId, row: r.row, item: item as ImportItem, checkExisting: config.checkExisting }
          : { kind: 'download', runId, row: r.row, item: item as ExportItem, outDir: args.outDir! };
      jobs.push({
        name: spec.jobName,
        data,
        opts: { jobId: jobIdFor(runId, r.row), attempts: config.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true },
      });
    });
    if (redo.length > 0) {
      // Rows that failed or were rejected before get another chance in this invocation.
      await runs.deleteResults(redo);
      await Promise.all(redo.map((r) => queue.remove(jobIdFor(runId, r.row)).catch(() => 0)));
    }
    await runs.setResults(rejectedResults);
    if (jobs.length > 0) await queue.addBulk(jobs as never);
    queued += jobs.length;
  };
  // Two batches in flight: the next one is parsed and validated (CSV parsing, file stats) while
  // the previous one is written to Redis. Writes stay in manifest order, one batch at a time.
  let writing: Promise<void> | undefined;
  let batch: ManifestRecord[] = [];
  let batchSize = FIRST_BATCH;
  let collectedAt = 0;
  const flush = async (current: ManifestRecord[]) => {
    const checked = validate(current);
    await writing;
    writing = checked.then((c) => write(current, c));
    writing.catch(() => {}); // awaited (and thrown) by the next flush or at the end
  };
  for await (const record of readManifest(args.manifest, spec.required, args.read)) {
    total++;
    batch.push(record);
    if (batch.length >= batchSize) {
      batchSize = Math.min(BATCH, batchSize * 2);
      await flush(batch);
      batch = [];
      if (total - collectedAt >= ENQUEUE_COLLECT_EVERY_ROWS) {
        collectedAt = total;
        collectOldGarbage();
      }
      if (args.signal.aborted) break;
    }
  }
  if (batch.length > 0 && !args.signal.aborted) await flush(batch);
  await writing;
  return { total, queued, rejected, alreadyDone };
}

async function waitForRun(args: {
  runs: RunStore;
  queue: Queue;
  total: number;
  signal: AbortSignal;
  log: Logger;
  tty: boolean | undefined;
  pollMs: number;
  command: string;
  runId: string;
  /** --workers 0: the work is left to `idsync worker` processes. */
  workersElsewhere: boolean;
  idleCheckMs: number;
  /** This process's own workers: their finished jobs wake the loop before pollMs is over. */
  local?: Pick<WorkerHost, 'processed' | 'onProcessed'>;
  /** Called when more rows have results than at the last look (not awaited). */
  onResults?: () => void;
}): Promise<'done' | 'interrupted' | 'fatal' | 'lost'> {
  const progress = createProgress({ log: args.log, label: args.command, ...(args.tty !== undefined ? { tty: args.tty } : {}) });
  let lostChecks = 0;
  let lastDone = -1;
  let lastChange = Date.now();
  let lastWorkerCheck = 0;
  try {
    for (;;) {
      // A Redis outage must not make Ctrl-C go unnoticed: the signal wins the race.
      const [done, counts] = await untilAborted(Promise.all([args.runs.countResults(), args.runs.counts()]), args.signal);
      if (done === undefined) return 'interrupted';
      progress.update({ done, failed: (counts.failed ?? 0) + (counts.rejected ?? 0), total: args.total });
      if (done >= args.total) return 'done';
      if (args.signal.aborted) return 'interrupted';
      if ((await args.runs.getMeta())?.fatal) return 'fatal';
      if (args.workersElsewhere && Date.now() - lastWorkerCheck > 30_000) {
        lastWorkerCheck = Date.now();
        if ((await args.queue.getWorkersCount()) === 0) {
          args.log.warn({ queue: args.queue.name, waiting: args.total - done }, 'no `idsync worker` is serving this queue yet: start one with the same REDIS_URL and API settings (or run again without --workers 0)');
        }
      }
      if (done !== lastDone) {
        args.onResults?.();
        lastDone = done;
        lastChange = Date.now();
        lostChecks = 0;
      } else if (Date.now() - lastChange > args.idleCheckMs) {
        // Nothing moved for a while: make sure this run's missing rows still have jobs somewhere.
        lostChecks = (await args.runs.anyRowQueued(args.queue, rowNumbers(args.total))) ? 0 : lostChecks + 1;
        if (lostChecks >= 2) {
          args.log.error({ missing: args.total - done }, 'rows without a result have no job left in the queue');
          return 'lost';
        }
        lastChange = Date.now();
      }
      await nap(args, args.total - done);
    }
  } finally {
    progress.stop();
  }
}

/**
 * Sleeps pollMs, or less: once this process's own workers have finished as many jobs as rows
 * were missing, the run may be complete, so the loop looks again at once rather than up to
 * pollMs later (a short run would otherwise spend a good part of its time here). Only a hint:
 * what counts is what Redis says.
 */
function nap(args: { pollMs: number; signal: AbortSignal; local?: Pick<WorkerHost, 'processed' | 'onProcessed'> }, missing: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (args.signal.aborted) return resolve();
    const startedAt = args.local?.processed() ?? 0;
    let unsubscribe: (() => void) | undefined;
    const done = () => {
      clearTimeout(timer);
      unsubscribe?.();
      args.signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, args.pollMs);
    args.signal.addEventListener('abort', done, { once: true });
    if (args.local) {
      const local = args.local;
      unsubscribe = local.onProcessed(() => {
        if (local.processed() - startedAt >= missing) done();
      });
    }
  });
}

async function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T | [undefined, undefined]> {
  if (signal.aborted) return [undefined, undefined];
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<[undefined, undefined]>((resolve) => {
    onAbort = () => resolve([undefined, undefined]);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort!);
  }
}

function* rowNumbers(total: number): Generator<number> {
  for (let row = 1; row <= total; row++) yield row;
}

async function dryRun(args: {
  spec: CommandSpec;
  manifest: string;
  manifestDir: string;
  columns: string[];
  read: ManifestReadOptions;
  failedFormat: FailedCsvFormat;
  reportDir: string;
  runId: string;
  command: JobCommand;
  startedAt: Date;
  out: (line: string) => void;
}): Promise<JobRunResult> {
  const writer = new ReportWriter(args.reportDir, args.columns, args.spec.known, args.spec.failedRow?.(args.manifestDir), args.failedFormat);
  await writer.guard(async () => {
    for await (const record of readManifest(args.manifest, args.spec.required, args.read)) {
      let result: RowResult;
      try {
        const item = await args.spec.validate(record, args.manifestDir);
        result = { row: record.row, status: 'skipped', action: `dry-run: would ${args.spec.jobName}`, ...idsOf(record.values), ...('file' in item ? { file: item.file } : {}) };
      } catch (err) {
        if (!(err instanceof RowInvalidError)) throw err;
        result = { row: record.row, status: 'rejected', action: 'validate', ...idsOf(record.values), error: err.message, errorCode: err.code };
      }
      await writer.add(result, record.values, record.raw);
    }
  });
  const endedAt = new Date();
  const summary = await writer.finish({
    runId: args.runId,
    command: `${args.command} --dry-run`,
    manifest: args.manifest,
    startedAt: args.startedAt.toISOString(),
    endedAt: endedAt.toISOString(),
    interrupted: false,
    seconds: (endedAt.getTime() - args.startedAt.getTime()) / 1000,
  });
  args.out(`dry run: ${summary.counts.skipped} rows would be ${args.spec.jobName}ed, ${summary.counts.rejected} rejected; nothing was sent`);
  args.out(`report: ${path.join(summary.reportDir, 'report.csv')}`);
  return { summary, exitCode: exitCodeForOutcome({ failed: 0, rejected: summary.counts.rejected }) };
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function printSummary(s: RunSummary, out: (line: string) => void): void {
  const c = s.counts;
  out(
    `${s.command}${s.interrupted ? ' (interrupted)' : ''}: ${s.rows} rows: ${c.succeeded} succeeded, ${c.skipped} skipped, ${c.failed} failed, ${c.rejected} rejected; ${formatBytes(s.bytes)} in ${s.seconds.toFixed(1)} s (${s.itemsPerSecond} items/s)`,
  );
  out(`report: ${path.join(s.reportDir, 'report.csv')}`);
  if (c.failed + c.rejected > 0) out(`retry the failed and rejected rows with: idsync ${s.command} ${path.join(s.reportDir, 'failed.csv')}${s.command === 'export' ? ' --out …' : ''}`);
  if (s.interrupted) out('interrupted: run the same command again to resume');
}
