import {
  type Classification,
  ApiUnreachableError,
  ApiUnusableError,
  AuthRefusedError,
  errorCode,
  ExistenceCheckError,
  FileChangedError,
  FileError,
  HttpStatusError,
  IdsyncError,
  LedgerWriteError,
  NetworkError,
  NotAllowedError,
  ProtocolError,
  TimeoutError,
  TlsError,
} from '../errors.ts';
import type { OverloadReason } from '../pacing/concurrency-limit.ts';

/** What to do about a failure: the ONE place that decides it (docs/architecture.md, "Habits"); nothing else lists HTTP status codes. */
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
/**
 * Answers that mean "too much at once" to --concurrency auto: the server (or its gateway) refused
 * for capacity (503), asked to slow down (429), or gave up waiting for a busy backend (504).
 * 500 and 502 are failures, not load: cutting the concurrency for them would not help.
 */
const OVERLOAD_STATUS = new Set([429, 503, 504]);

function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method.toUpperCase());
}

/**
 * Redis refusing a write for a reason no retry fixes (out of memory under noeviction, an ACL
 * without the permission): the run stops, naming it, rather than failing row after row.
 */
export function isRedisRefusal(err: unknown): boolean {
  const e = err as { name?: unknown; message?: unknown } | null;
  return e?.name === 'ReplyError' && typeof e.message === 'string' && /^(OOM|NOPERM)/.test(e.message);
}

export function classify(err: unknown): Classification {
  // The check is a GET that sent nothing: worth what its own failure is worth, never in doubt.
  if (err instanceof ExistenceCheckError) return { ...classify(err.cause), ambiguous: false };
  if (err instanceof TlsError || err instanceof AuthRefusedError || err instanceof ApiUnreachableError || err instanceof ApiUnusableError || err instanceof LedgerWriteError || isRedisRefusal(err)) {
    return { kind: 'fatal', ambiguous: false };
  }
  // Outside --allow-read/--allow-write: the worker's own settings say no, and no retry changes them.
  if (err instanceof NotAllowedError) return { kind: 'permanent', ambiguous: false };
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

/**
 * The class of a failure for reports, metrics and summaries: an HttpStatusError keeps its class
 * (E_HTTP_STATUS) but is reported by what its status means, so a 403 and a 503 are not one code.
 * Everything else is its own stable code (E_NETWORK, E_TIMEOUT, E_CONFLICT, E_CHECK_FAILED …).
 */
export function errorClass(err: unknown): string {
  if (err instanceof HttpStatusError) return statusClass(err.status);
  return errorCode(err);
}

function statusClass(status: number): string {
  if (status === 401) return 'E_UNAUTHORIZED';
  if (status === 403) return 'E_FORBIDDEN';
  if (status === 404) return 'E_NOT_FOUND';
  if (status === 408) return 'E_TIMEOUT';
  if (status === 409) return 'E_CONFLICT';
  if (status === 413) return 'E_TOO_LARGE';
  if (status === 429) return 'E_THROTTLED';
  if (status === 400 || status === 422) return 'E_BAD_REQUEST';
  if (status >= 500) return 'E_SERVER';
  return 'E_HTTP_STATUS';
}

/** Whether another try (a rerun) may succeed: what the report's `retryable` column says. */
export function isRetryable(err: unknown): boolean {
  const kind = classify(err).kind;
  return kind === 'retry' || kind === 'retry-after' || kind === 'refresh-auth';
}

/**
 * The 401 or 403 behind a failure (its own answer, or its existence check's), when the API
 * refused the account rather than the request: what stops a run whose first rows all get one.
 */
export function refusalOf(err: unknown): HttpStatusError | undefined {
  const http = err instanceof ExistenceCheckError ? err.cause : err;
  return http instanceof HttpStatusError && (http.status === 401 || http.status === 403) ? http : undefined;
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
 * Whether a failed request tells --concurrency auto that the API is over its capacity, and how.
 * A server that stops accepting or drops connections, or does not answer in time, is full too.
 */
export function overloadOf(err: unknown): OverloadReason | undefined {
  if (err instanceof HttpStatusError) return OVERLOAD_STATUS.has(err.status) ? 'status' : undefined;
  if (err instanceof TimeoutError) return err.phase === 'body' ? undefined : 'timeout';
  if (err instanceof NetworkError && err.sysCode !== undefined && (RESET_CODES.has(err.sysCode) || err.sysCode === 'ECONNREFUSED')) return 'connection';
  return undefined;
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
  if (err instanceof TlsError || err instanceof AuthRefusedError || err instanceof FileError || err instanceof FileChangedError || err instanceof NotAllowedError) return false;
  return true;
}
