/** The statuses a row's result is stored under in Redis (3 status bits per row). */
export type StoredRowStatus = 'succeeded' | 'skipped' | 'failed' | 'rejected';

/**
 * What a report line says. `interrupted` is for the report only: a row not finished when the run
 * stopped (Ctrl-C, a fatal error) has no result in Redis, and its rerun simply does it.
 */
export type RowStatus = StoredRowStatus | 'interrupted';

export const ROW_STATUSES: readonly RowStatus[] = ['succeeded', 'skipped', 'failed', 'rejected', 'interrupted'];

/** Counts per status, every status present. */
export function emptyCounts(): Record<RowStatus, number> {
  return { succeeded: 0, skipped: 0, failed: 0, rejected: 0, interrupted: 0 };
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
