import { IdsyncError } from '../errors.ts';

/** The exit codes of cli.md, and the one place that maps outcomes and errors onto them. */
export const ExitCode = {
  /** Every row succeeded or was skipped. */
  Ok: 0,
  /** The run finished and at least one row failed or was rejected. */
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
  failed: number;
  rejected: number;
}

export function exitCodeForOutcome(o: Outcome): ExitCodeValue {
  switch (o.ending) {
    case 'interrupted':
    case 'cancelled':
      return ExitCode.Interrupted;
    case 'fatal':
    case 'stopped':
      return ExitCode.CannotStart;
    default:
      return o.failed > 0 || o.rejected > 0 ? ExitCode.RowsFailed : ExitCode.Ok;
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
