import type { AllowedFolders } from '../src/allowed-folders.ts';
import type { ApiClient } from '../src/api/client.ts';
import type { Logger } from '../src/log.ts';
import type { Clock } from '../src/pacing/clock.ts';
import type { RowResult, RowStatus, StatusCounts } from '../src/report/row-result.ts';
import type { ApiStore } from '../src/store/api-store.ts';
import type { Ledger } from '../src/store/ledger/ledger.ts';

/**
 * The contract between the engine and a kind of job. A kind is one file in jobs/ and one line
 * in jobs/registry.ts; the engine queues, runs, retries and reports every kind the same way.
 */

/** What a row job reports; the engine adds row, attempts and timing. */
export type JobOutcome = Omit<RowResult, 'row' | 'attempts' | 'finishedAt'>;

/** A result the kind recorded itself (an upload records it with its document's commit, in one step). */
export interface Recorded {
  recorded: RowResult;
}

/** What every job may use, injected by the engine. */
export interface JobContext {
  client: ApiClient;
  store: ApiStore;
  ledger: Ledger;
  log: Logger;
  /** Window ends and archive timestamps come from here, so tests can pin time. */
  clock: Clock;
  /** What control jobs may ask of the engine (start a run, look at one, write its report). */
  runs: RunServices;
  /** --allow-read: uploads read only files inside these folders (checked on the open file). */
  allowRead?: AllowedFolders;
  /** --allow-write: downloads write only inside these folders (checked before a folder is made). */
  allowWrite?: AllowedFolders;
}

/** One row's job as a kind sees it. */
export interface RowJob<P> {
  runId: string;
  row: number;
  payload: P;
  /** 1 on the first attempt. */
  attempt: number;
  /** An earlier attempt may have reached the server (it failed ambiguously, or its worker died). */
  inDoubt: boolean;
  /** Remembers on the job that its next attempt must ask before sending. */
  markInDoubt(): Promise<void>;
  signal?: AbortSignal;
  /** The job's logger (made on first use: a pino child per job costs CPU most jobs never need). */
  log(): Logger;
}

export interface RowJobKind<P = unknown> {
  readonly type: 'row';
  /** BullMQ job name, and the kind's name in payloads and registries. */
  readonly name: string;
  /** The report's action for a row of this kind that failed. */
  readonly action: string;
  /**
   * The kind asks whether its row is settled (and its run still going) itself, in the same Redis
   * call as its own first step (an upload: its document's claim); otherwise the engine asks first.
   */
  readonly startsItself?: true;
  /** The ids a report line of this row shows (personId, faceId, file, output …). */
  ids(payload: P): Partial<RowResult>;
  run(job: RowJob<P>, ctx: JobContext): Promise<JobOutcome | Recorded>;
}

/** A job that organises runs (a scheduled tick, the wait for a report): it has no row of its own. */
export interface ControlJob<P> {
  id: string;
  payload: P;
  attempt: number;
  /** When the job was meant to run: a scheduler's tick time, the same on every retry. */
  scheduledAt: number;
  signal?: AbortSignal;
  log(): Logger;
  /** Puts the job back to run again after `ms`, holding no worker slot meanwhile (ends the run of it). */
  later(ms: number, payload?: P): Promise<never>;
}

export interface ControlJobKind<P = unknown> {
  readonly type: 'control';
  readonly name: string;
  run(job: ControlJob<P>, ctx: JobContext): Promise<void>;
}

export type JobKind = RowJobKind<never> | ControlJobKind<never>;

/** One row of a planned run, in order: the report's line, and its job or its result known at once. */
export interface PlannedRow {
  row: number;
  /** The row's text as read, for a row that did not fit the input's header (failed.csv gets it back). */
  raw?: string;
  /** The report's cells for the row (a manifest's values; an archive line's kind and id). */
  values: Record<string, string>;
  job?: { kind: string; payload: unknown };
  /** A result known without a job (a rejected line, a repeated one). */
  result?: Omit<RowResult, 'row'>;
}

/** A run as a list of rows: what `import`, `export`, `verify` and `archive` hand to the engine. */
export interface RunPlan {
  runId: string;
  command: string;
  input: string;
  inputSha256?: string;
  /**
   * False for a run that is never run again under its id (an archive run: the next one covers its
   * gap through the watermarks): when it stops, its queued jobs are dropped rather than kept.
   */
  resumable?: boolean;
  /**
   * True when a row's work can vanish after it was done (an exported file deleted from --out): a
   * rerun does every row again, and its job looks first whether the work is still there (a file
   * at its name is not fetched again), so remembered results never outrank the disk.
   */
  recheckSettled?: boolean;
  /** Reads every row once before anything is queued (a plan that cannot be read sends nothing); the number of rows. */
  check(signal?: AbortSignal): Promise<number>;
  /** The rows in order, each validated, with its job or result (the queueing pass). */
  rows(signal?: AbortSignal, context?: RowsContext): AsyncIterable<PlannedRow>;
  /** The rows in order with their report cells only (the report's pass: no validation). */
  lines(): AsyncIterable<{ row: number; values: Record<string, string>; raw?: string }>;
  /** The report's shape. */
  report: ReportShape;
}

/** What the queueing pass offers a plan: claims on the run's outputs (export: no two rows write one file). */
export interface RowsContext {
  /** For each claim another row holds: that row. `stemOnly`: the output's extension is decided later (claims its stem). */
  claimOutputs(claims: Array<{ row: number; output: string; stemOnly: boolean }>): Promise<Map<number, number>>;
}

export interface ReportShape {
  /** Columns of the input (the manifest's header), in order; failed.csv has exactly these. */
  columns: string[];
  /** Input columns that are not passed through as extra report columns. */
  knownColumns: readonly string[];
  /** The action of a row that ends without a result. */
  action: string;
  /** The report's ids of a row that never had a result. */
  ids(values: Record<string, string>): Partial<RowResult>;
  /** How a failed row is written to failed.csv (import makes a relative `file` absolute). */
  failedRow?: (values: Record<string, string>) => Record<string, string>;
  /** failed.csv's delimiter and header: the input's. */
  failedFormat?: { delimiter?: string; header?: readonly string[] };
  /**
   * The statuses the run's rows end in, as the summary shows them (even at 0), in order; default
   * succeeded, skipped, failed, rejected. verify's are verified, mismatch, missing, failed, rejected.
   */
  statuses?: readonly RowStatus[];
}

/** The engine's services for control jobs. */
export interface RunServices {
  /** Registers a run and queues all its rows without waiting for them (a scheduled archive tick). */
  start(plan: RunPlan, options: { attempts: number; startedAt: number; reportDir: string }): Promise<void>;
  /** How far a started run is: rows with a result, rows in all, jobs still queued (waiting, delayed or active), its state. */
  status(runId: string): Promise<{ done: number; total: number | undefined; queued: number; state?: string }>;
  /** Writes a run's report (rows without a result get `missing` as their reason) and ends the run. */
  finish(plan: RunPlan, missing: { code: string; text: string }): Promise<RunSummaryLike>;
  /** Adds a control job (to the API's control queue). */
  schedule(kind: string, payload: unknown, options: { jobId: string; delayMs: number; attempts: number }): Promise<void>;
}

/** What a finished run's report says (src/report/report-writer.ts's RunSummary). */
export interface RunSummaryLike {
  runId: string;
  rows: number;
  counts: StatusCounts;
  bytes: number;
  reportDir: string;
}
