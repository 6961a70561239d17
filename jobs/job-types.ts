import type { ApiClient } from '../src/api/client.ts';
import type { Logger } from '../src/log.ts';
import type { RowResult } from '../src/report/row-result.ts';
import type { ImportItem } from '../src/sources/import-items.ts';
import type { ExportItem } from '../src/sources/export-items.ts';
import type { Ledger } from '../src/state/ledger.ts';
import type { DeferredStored, DocumentLocks, StoredDocuments } from '../src/queue/document-lock.ts';
import type { RunStore } from '../src/queue/run-store.ts';
import type { Redis } from 'ioredis';
import type { Clock } from '../src/pacing/clock.ts';
import type { ArchiveDetectionsJobData, ArchiveEnrollmentJobData, ArchiveReportJobData, ArchiveTickJobData } from './archive-job-data.ts';

export interface UploadJobData {
  kind: 'upload';
  runId: string;
  row: number;
  item: ImportItem;
  checkExisting: boolean;
  /** Set when an earlier attempt of this job may have reached the server. */
  ambiguous?: boolean;
  /** How often the API throttled this job (429): those tries do not count as attempts. */
  throttles?: number;
}

export interface DownloadJobData {
  kind: 'download';
  runId: string;
  row: number;
  item: ExportItem;
  /** Absolute --out folder. */
  outDir: string;
  throttles?: number;
}

/** Jobs that stand for one row of a run (and record its result). */
export type RowJobData = UploadJobData | DownloadJobData | ArchiveEnrollmentJobData | ArchiveDetectionsJobData;
/** Jobs that organise a run (a scheduled archive tick, the wait for its report): no row of their own. */
export type ControlJobData = ArchiveTickJobData | ArchiveReportJobData;
export type JobData = RowJobData | ControlJobData;

export function isControlJob(data: JobData): data is ControlJobData {
  return data.kind === 'archive-tick' || data.kind === 'archive-report';
}

/** Work a processor leaves to the runner's recording of the row's result (done in the same Redis call). */
export interface AfterJob {
  /** The document to record as stored, and its lock to release. */
  stored?: DeferredStored;
}

/** What a processor reports; the runner adds row, attempts and timing. */
export type JobOutcome = Omit<RowResult, 'row' | 'attempts' | 'finishedAt'>;

/** Everything a processor may use, injected by the worker host. */
export interface JobContext {
  client: ApiClient;
  ledger: Ledger;
  locks: DocumentLocks;
  stored: StoredDocuments;
  run(runId: string): RunStore;
  log: Logger;
  /** A connection for small state of its own (archive watermarks, tick history). */
  redis: Redis;
  /** Window ends and archive timestamps come from here, so tests can pin time. */
  clock: Clock;
}

/** Thrown by a processor that must wait for another job (same document in flight elsewhere). */
export class DocumentBusy extends Error {
  readonly retryInMs: number;
  constructor(retryInMs = 1000) {
    super('the same document is being uploaded by another job');
    this.retryInMs = retryInMs;
  }
}

/** The job's row already has a final result (a job run again after a crash): return it as it is. */
export class RowAlreadyDone extends Error {
  readonly prior: RowResult;
  constructor(prior: RowResult) {
    super(`row ${prior.row} is already done`);
    this.prior = prior;
  }
}

/** The job's run stopped on a fatal error: the job must not start. */
export class RunStopped extends Error {
  readonly fatal: string;
  constructor(fatal: string) {
    super(`run stopped: ${fatal}`);
    this.fatal = fatal;
  }
}

/** Throws RowAlreadyDone or RunStopped for what RunStore.jobStart found, if anything. */
export function throwIfRowSettled(start: { prior: RowResult | undefined; fatal: string | undefined }): void {
  if (start.prior && start.prior.status !== 'failed' && start.prior.status !== 'rejected') throw new RowAlreadyDone(start.prior);
  if (start.fatal) throw new RunStopped(start.fatal);
}
