import {
  type Classification,
  ApiUnreachableError,
  ApiUnusableError,
  AuthRefusedError,
  FileChangedError,
  FileError,
  HttpStatusError,
  IdsyncError,
  NetworkError,
  ProtocolError,
  TimeoutError,
  TlsError,
} from '../errors.ts';

/** What to do about a failure: the ONE place that decides it (STYLE.md habit 1); nothing else lists HTTP status codes. */
export type { Classification } from '../errors.ts';

const RETRYABLE_STATUS = new Set([408, 429, 500, 502, 503, 504]);
/**
 * A 429 without Retry-After (proxies send those) is still "slow down", not a failure: treat it
 * as a short Retry-After so the whole process and queue pause instead of spending attempts.
 */
export const DEFAULT_THROTTLE_MS = 2_000;
/** Statuses that say the server did not act on the request, whatever happened to its body. */
const NOT_PROCESSED_STATUS = new Set([408, 429]);
const IDEMPOTENT = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
/** authenticate answering one of these means "wrong credentials" (or a locked account). */
const CREDENTIALS_REFUSED_STATUS = new Set([400, 401, 403]);
/** Errno codes of local files that no retry can fix. */
const PERMANENT_FILE_CODES = new Set(['ENOENT', 'EACCES', 'EPERM', 'EISDIR', 'ENOTDIR', 'ENAMETOOLONG', 'ELOOP']);
/** Connection broke after it was set up (the classic stale keep-alive socket). */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'ECONNABORTED']);

function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

export function classify(err: unknown): Classification {
  if (err instanceof TlsError || err instanceof AuthRefusedError || err instanceof ApiUnreachableError || err instanceof ApiUnusableError) {
    return { kind: 'fatal', ambiguous: false };
  }
  // Cut before its last bytes: the server never had a complete upload. Hashed afresh next time.
  if (err instanceof FileChangedError) return { kind: 'retry', ambiguous: false };
  if (err instanceof HttpStatusError) {
    const sentAndMaybeProcessed = err.requestSent && !isIdempotent(err.method) && !NOT_PROCESSED_STATUS.has(err.status);
    if (err.status === 401) return { kind: 'refresh-auth', ambiguous: false };
    if (RETRYABLE_STATUS.has(err.status)) {
      const ambiguous = sentAndMaybeProcessed && err.status >= 500;
      if (err.retryAfterMs !== undefined) return { kind: 'retry-after', ms: err.retryAfterMs, ambiguous };
      if (err.status === 429) return { kind: 'retry-after', ms: DEFAULT_THROTTLE_MS, ambiguous };
      return { kind: 'retry', ambiguous };
    }
    return { kind: 'permanent', ambiguous: false };
  }
  if (err instanceof NetworkError || err instanceof TimeoutError) {
    return { kind: 'retry', ambiguous: err.requestSent && !isIdempotent(err.method) };
  }
  if (err instanceof FileError) {
    return { kind: err.sysCode !== undefined && PERMANENT_FILE_CODES.has(err.sysCode) ? 'permanent' : 'retry', ambiguous: false };
  }
  if (err instanceof ProtocolError) return { kind: 'permanent', ambiguous: false };
  if (err instanceof IdsyncError) {
    // The work was done but its result could not be recorded: try again, asking first.
    const again = err.code === 'E_RESULT_NOT_RECORDED';
    return { kind: again ? 'retry' : 'permanent', ambiguous: again };
  }
  // Cancelled by our own signal (shutdown): worth doing again later; an upload may have left.
  if ((err as { name?: unknown } | null)?.name === 'AbortError') return { kind: 'retry', ambiguous: true };
  // Anything else is a bug or an unforeseen failure: retrying blindly would hide it.
  return { kind: 'permanent', ambiguous: false };
}

/** The API says the document or photo does not exist. */
export function isNotFound(err: unknown): boolean {
  return err instanceof HttpStatusError && err.status === 404;
}

export function isCredentialRefusal(status: number): boolean {
  return CREDENTIALS_REFUSED_STATUS.has(status);
}

/** A broken connection before any byte of the answer: an idempotent GET may be sent once more. */
export function isConnectionReset(err: unknown): boolean {
  return err instanceof NetworkError && err.sysCode !== undefined && RESET_CODES.has(err.sysCode);
}

/**
 * The API did not work at all: no connection, no answer in time, or a 5xx or 408 answer. What a
 * heartbeat calls "down" (src/api/api-health.ts); a 4xx or a 429 is an answer from a working server.
 */
export function isOutage(err: unknown): boolean {
  if (err instanceof NetworkError || err instanceof TimeoutError) return true;
  return err instanceof HttpStatusError && (err.status >= 500 || err.status === 408);
}

export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}

/**
 * For a request that stores something (the upload): could the server have processed it, so that
 * sending it again risks a second copy? Only a definite refusal (a 4xx answer) or a failure
 * before the request went out says no. Anything unforeseen counts as doubt: that costs one
 * existence check on the next try, never a duplicate.
 */
export function mayHaveBeenProcessed(err: unknown): boolean {
  if (err instanceof HttpStatusError) return err.requestSent && err.status >= 500;
  if (err instanceof NetworkError || err instanceof TimeoutError) return err.requestSent;
  if (err instanceof TlsError || err instanceof AuthRefusedError || err instanceof FileError || err instanceof FileChangedError) return false;
  return true;
}
