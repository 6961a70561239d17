import { IdsyncError } from '../errors.ts';
import { rowsNotOk, type StatusCounts } from '../report/row-result.ts';

/** The exit codes (README, "Exit codes"), and the one place that maps outcomes and errors onto them. */
export const ExitCode = {
  /** Every row succeeded or was skipped (verify: every row verified). */
  Ok: 0,
  /** The run finished and at least one row failed or was rejected (or, verify: differs or is missing). */
  RowsFailed: 1,
  /** The run could not start (or had to stop): usage, config, credentials, Redis, manifest. */
  CannotStart: 2,
  /** Interrupted; the same command resumes. */
  Interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/**
 * How a run ended: every row has a result (`done`), some rows' jobs vanished (`lost`: those rows
 * are reported failed), Ctrl-C (`interrupted`), a fatal error recorded by a job such as refused
 * credentials (`fatal`), the run could not go on, e.g. Redis refused writes (`stopped`), or an
 * operator cancelled it from elsewhere (`cancelled`: like an interrupt, its rerun resumes it).
 */
export type Ending = 'done' | 'lost' | 'interrupted' | 'fatal' | 'stopped' | 'cancelled';

export interface Outcome {
  ending: Ending;
  /** The run's rows per status (the report's counts). */
  counts: StatusCounts;
}

/** A finished run exits 0 only when every row is OK (succeeded, skipped, verified: row-result.ts's OK_STATUSES). */
export function exitCodeForOutcome(o: Outcome): ExitCodeValue {
  switch (o.ending) {
    case 'interrupted':
    case 'cancelled':
      return ExitCode.Interrupted;
    case 'fatal':
    case 'stopped':
      return ExitCode.CannotStart;
    default:
      return rowsNotOk(o.counts) > 0 ? ExitCode.RowsFailed : ExitCode.Ok;
  }
}

/** Error codes that mean "could not start" (exit 2); an unexpected error is not a clean run either (exit 1). */
const CANNOT_START = new Set([
  'E_USAGE',
  'E_CONFIG',
  'E_REDIS_UNAVAILABLE',
  'E_MANIFEST',
  'E_AUTH_REFUSED',
  'E_TLS',
  'E_API_UNREACHABLE',
  'E_API_UNUSABLE',
  'E_REPORT',
  'E_REDIS_OOM',
]);

export function exitCodeForError(err: unknown): ExitCodeValue {
  if (err instanceof IdsyncError) {
    if (err.code === 'E_INTERRUPTED') return ExitCode.Interrupted;
    return CANNOT_START.has(err.code) ? ExitCode.CannotStart : ExitCode.RowsFailed;
  }
  return ExitCode.RowsFailed;
}
