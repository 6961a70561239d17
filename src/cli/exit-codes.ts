import { IdsyncError } from '../errors.ts';

/** The exit codes of cli.md, and the one place that maps outcomes and errors onto them. */
export const ExitCode = {
  /** Every row succeeded or was skipped. */
  Ok: 0,
  /** The run finished and at least one row failed or was rejected. */
  RowsFailed: 1,
  /** The run could not start or had to stop: usage, config, credentials, API unreachable, Redis, manifest, report not writable. */
  CannotStart: 2,
  /** Interrupted; the same command resumes. */
  Interrupted: 130,
} as const;

export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface OutcomeCounts {
  failed: number;
  rejected: number;
  interrupted?: boolean;
}

export function exitCodeForOutcome(counts: OutcomeCounts): ExitCodeValue {
  if (counts.interrupted) return ExitCode.Interrupted;
  return counts.failed > 0 || counts.rejected > 0 ? ExitCode.RowsFailed : ExitCode.Ok;
}

export function exitCodeForError(err: unknown): ExitCodeValue {
  if (err instanceof IdsyncError) {
    switch (err.code) {
      case 'E_INTERRUPTED':
        return ExitCode.Interrupted;
      case 'E_USAGE':
      case 'E_CONFIG':
      case 'E_NOT_IMPLEMENTED':
      case 'E_REDIS_UNAVAILABLE':
      case 'E_MANIFEST':
      case 'E_AUTH_REFUSED':
      case 'E_TLS':
      case 'E_API_UNREACHABLE':
      case 'E_API_UNUSABLE':
      case 'E_REPORT':
        return ExitCode.CannotStart;
      default:
        return ExitCode.RowsFailed;
    }
  }
  // An unexpected bug: not "could not start", but not a clean run either.
  return ExitCode.RowsFailed;
}
