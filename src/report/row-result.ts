/** What a row of any command ends in. */
export type BaseStatus = 'succeeded' | 'skipped' | 'failed' | 'rejected';
/** What `idsync verify` finds for a row it could check: the copy is the same, differs, or is gone. */
export type CheckStatus = 'verified' | 'mismatch' | 'missing';
export type RowStatus = BaseStatus | CheckStatus;

/** Every status, in the order summaries show them. */
export const ROW_STATUSES: readonly RowStatus[] = ['succeeded', 'skipped', 'verified', 'mismatch', 'missing', 'failed', 'rejected'];

/** Statuses that leave nothing to do: a run exits 0 only when every row has one of these. */
export const OK_STATUSES: ReadonlySet<RowStatus> = new Set<RowStatus>(['succeeded', 'skipped', 'verified']);

/** Statuses of rows that were not done (failed.csv holds them besides the other rows not OK). */
const NOT_DONE: ReadonlySet<RowStatus> = new Set<RowStatus>(['failed', 'rejected']);

/**
 * Rows per status. Every run counts the four statuses of every command; a verify run counts its
 * own three as well (summaries show them even at 0).
 */
export type StatusCounts = Record<BaseStatus, number> & Partial<Record<CheckStatus, number>>;

/** Counts at 0: the four of every command, plus `also` (a verify run's). */
export function emptyCounts(also: readonly RowStatus[] = []): StatusCounts {
  const counts: StatusCounts = { succeeded: 0, skipped: 0, failed: 0, rejected: 0 };
  for (const s of also) counts[s] ??= 0;
  return counts;
}

/** Rows counted, whatever their status. */
export function countedRows(counts: StatusCounts): number {
  let n = 0;
  for (const s of ROW_STATUSES) n += counts[s] ?? 0;
  return n;
}

/** Rows whose status is not OK (failed, rejected, mismatch, missing). */
export function rowsNotOk(counts: StatusCounts): number {
  let n = 0;
  for (const s of ROW_STATUSES) if (!OK_STATUSES.has(s)) n += counts[s] ?? 0;
  return n;
}

/** Rows that were done, whatever they found: everything but failed and rejected (items per second). */
export function rowsDone(counts: StatusCounts): number {
  let n = 0;
  for (const s of ROW_STATUSES) if (!NOT_DONE.has(s)) n += counts[s] ?? 0;
  return n;
}

/** What happened to one manifest row: the unit every report line is made of. */
export interface RowResult {
  row: number;
  status: RowStatus;
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
  errorCode?: string;
  finishedAt?: number;
}

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
] as const;
