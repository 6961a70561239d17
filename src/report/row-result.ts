export type RowStatus = 'succeeded' | 'skipped' | 'failed' | 'rejected';

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
