/** What a row of any command ends in. */
export type BaseStatus = 'succeeded' | 'skipped' | 'failed' | 'rejected';
/** What `idsync verify` finds for a row it could check: the copy is the same, differs, or is gone. */
export type CheckStatus = 'verified' | 'mismatch' | 'missing';
/** The statuses a row's result is stored under in Redis (3 status bits per row: src/store/row-scripts.ts). */
export type StoredRowStatus = BaseStatus | CheckStatus;

/**
 * What a report line says. `interrupted` is for the report only: a row not finished when the run
 * stopped (Ctrl-C, a fatal error) has no result in Redis, and its rerun simply does it.
 */
export type RowStatus = StoredRowStatus | 'interrupted';

/** Every status, in the order summaries show them. */
export const ROW_STATUSES: readonly RowStatus[] = ['succeeded', 'skipped', 'verified', 'mismatch', 'missing', 'failed', 'rejected', 'interrupted'];

/** Statuses that leave nothing to do: a run exits 0 only when every row has one of these. */
export const OK_STATUSES: ReadonlySet<RowStatus> = new Set<RowStatus>(['succeeded', 'skipped', 'verified']);

/** Statuses of rows that were not done (not counted as speed; failed.csv holds them). */
const NOT_DONE: ReadonlySet<RowStatus> = new Set<RowStatus>(['failed', 'rejected', 'interrupted']);

/**
 * Rows per status. Every run counts the statuses of every command (interrupted included); a
 * verify run counts its own three as well (summaries show them even at 0).
 */
export type StatusCounts = Record<BaseStatus | 'interrupted', number> & Partial<Record<CheckStatus, number>>;

/** Counts at 0: those of every command, plus `also` (a verify run's). */
export function emptyCounts(also: readonly RowStatus[] = []): StatusCounts {
  const counts: StatusCounts = { succeeded: 0, skipped: 0, failed: 0, rejected: 0, interrupted: 0 };
  for (const s of also) counts[s] ??= 0;
  return counts;
}

/** Rows counted, whatever their status. */
export function countedRows(counts: Partial<Record<RowStatus, number>>): number {
  let n = 0;
  for (const s of ROW_STATUSES) n += counts[s] ?? 0;
  return n;
}

/** Rows whose status is not OK (failed, rejected, interrupted, mismatch, missing). */
export function rowsNotOk(counts: Partial<Record<RowStatus, number>>): number {
  let n = 0;
  for (const s of ROW_STATUSES) if (!OK_STATUSES.has(s)) n += counts[s] ?? 0;
  return n;
}

/** Rows that were done, whatever they found: everything but failed, rejected and interrupted (items per second). */
export function rowsDone(counts: Partial<Record<RowStatus, number>>): number {
  let n = 0;
  for (const s of ROW_STATUSES) if (!NOT_DONE.has(s)) n += counts[s] ?? 0;
  return n;
}

/** What happened to one manifest row, as recorded in Redis: the unit every report line is made of. */
export interface RowResult {
  row: number;
  status: StoredRowStatus;
  /** What was done or would have been done: uploaded, downloaded, exists-on-server, in-ledger, … */
  action: string;
  personId?: string;
  faceId?: string;
  detectionId?: string;
  documentId?: string;
  file?: string;
  output?: string;
  bytes?: number;
  sha256?: string;
  attempts?: number;
  httpStatus?: number;
  error?: string;
  /** The class of the failure (E_FORBIDDEN, E_SERVER, E_NETWORK …; src/api/classify.ts errorClass). */
  errorCode?: string;
  /** Whether another try may succeed (a rerun), as classify() judged the failure. */
  retryable?: boolean;
  finishedAt?: number;
}

/** One line of a report: a row's result, or `interrupted` for a row the run did not finish. */
export type ReportRow = Omit<RowResult, 'status'> & { status: RowStatus };

export const REPORT_COLUMNS = [
  'row',
  'status',
  'action',
  'personId',
  'faceId',
  'detectionId',
  'documentId',
  'file',
  'output',
  'bytes',
  'sha256',
  'attempts',
  'httpStatus',
  'error',
  'errorCode',
  'retryable',
] as const;
