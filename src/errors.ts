/**
 * The one errors module. Every failure idsync reports is one of these classes, each with a
 * stable `code` that logs, reports and tests can match on. Whether a failure is worth another
 * try is decided in one place only: `classify()` in src/api/classify.ts.
 */

export type ErrorCode =
  | 'E_USAGE'
  | 'E_CONFIG'
  | 'E_REDIS_UNAVAILABLE'
  | 'E_REDIS_OOM'
  | 'E_MANIFEST'
  | 'E_ROW_INVALID'
  | 'E_FILE'
  | 'E_FILE_EMPTY'
  | 'E_FILE_CHANGED'
  | 'E_OUTSIDE_OUT'
  | 'E_UNSAFE_PATH'
  | 'E_BAD_CONTENT'
  | 'E_REPORT'
  | 'E_STATE_DIR'
  | 'E_API_UNREACHABLE'
  | 'E_API_UNUSABLE'
  | 'E_AUTH_REFUSED'
  | 'E_TLS'
  | 'E_HTTP_STATUS'
  | 'E_UNAUTHORIZED'
  | 'E_FORBIDDEN'
  | 'E_NOT_FOUND'
  | 'E_BAD_REQUEST'
  | 'E_TOO_LARGE'
  | 'E_THROTTLED'
  | 'E_SERVER'
  | 'E_CHECK_FAILED'
  | 'E_PERMISSION'
  | 'E_NETWORK'
  | 'E_TIMEOUT'
  | 'E_PROTOCOL'
  | 'E_INTERRUPTED'
  | 'E_RESULT_NOT_RECORDED'
  | 'E_CONFLICT'
  | 'E_JOB_REFUSED'
  | 'E_NOT_ALLOWED'
  | 'E_INTERNAL';

export class IdsyncError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** Bad command line: unknown option, missing argument, contradictory flags. Exit 2. */
export class UsageError extends IdsyncError {
  constructor(message: string) {
    super('E_USAGE', message);
  }
}

/** A setting is missing or invalid. `setting` names it the way the user spells it. Exit 2. */
export class ConfigError extends IdsyncError {
  readonly setting: string | undefined;
  constructor(message: string, setting?: string) {
    super('E_CONFIG', message);
    this.setting = setting;
  }
}

export class RedisUnavailableError extends IdsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_REDIS_UNAVAILABLE', message, options);
  }
}

/** The manifest as a whole cannot be used (unreadable, missing a required column). Exit 2. */
export class ManifestError extends IdsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_MANIFEST', message, options);
  }
}

/** One manifest row is invalid: it is reported `rejected` and the run goes on. */
export class RowInvalidError extends IdsyncError {
  constructor(message: string) {
    super('E_ROW_INVALID', message);
  }
}

/** A local file cannot be read or written (missing, permission, disk full). */
export class FileError extends IdsyncError {
  readonly path: string;
  readonly sysCode: string | undefined;
  constructor(message: string, path: string, options?: { cause?: unknown }) {
    super('E_FILE', message, options);
    this.path = path;
    const cause = options?.cause as NodeJS.ErrnoException | undefined;
    this.sysCode = cause?.code;
  }
}

/** A file to upload is empty when it is read for sending (emptied after validation, say): never uploaded. */
export class EmptyFileError extends IdsyncError {
  readonly path: string;
  constructor(path: string) {
    super('E_FILE_EMPTY', `${path} is empty (0 bytes) now; an empty file is not uploaded: check the file and run the same command again`);
    this.path = path;
  }
}

/**
 * A file changed between hashing and sending (rewritten, grown, shrunk). The request was cut
 * before its last bytes, so the server never received a complete upload: worth another try,
 * which hashes the file again, and nothing is in doubt.
 */
export class FileChangedError extends IdsyncError {
  readonly path: string;
  constructor(path: string, what: string) {
    super('E_FILE_CHANGED', `${path} changed while it was being sent (${what}); the upload was cut short and will be tried again`);
    this.path = path;
  }
}

/** An output path leaves --out (`..`, or a link on the way, also one swapped in meanwhile). Never retried. */
export class OutsideOutError extends IdsyncError {
  readonly path: string;
  constructor(message: string, path: string) {
    super('E_OUTSIDE_OUT', message);
    this.path = path;
  }
}

/**
 * A file or folder idsync was to read, move or create is reached through a symbolic link, or is no
 * longer the one it took (its folder or itself swapped, its content changed, since it was seen).
 * Nothing is read, sent or moved through it; never retried.
 */
export class UnsafePathError extends IdsyncError {
  readonly path: string;
  constructor(message: string, path: string) {
    super('E_UNSAFE_PATH', message);
    this.path = path;
  }
}

/**
 * The API answered 200 with something other than what the endpoint serves (an HTML login page
 * or a JSON error instead of a JPEG, an empty body). Says what came instead; never retried.
 */
export class BadContentError extends IdsyncError {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  /** A short, secret-free excerpt of what came. */
  readonly excerpt: string;
  constructor(init: { method: string; path: string; expected: string; contentType?: string | undefined; excerpt: string; problem: string }) {
    const type = init.contentType ? `Content-Type ${init.contentType}` : 'no Content-Type';
    const excerpt = init.excerpt ? `: ${JSON.stringify(init.excerpt)}` : '';
    super('E_BAD_CONTENT', `${init.method} ${init.path} answered 200 with ${init.problem} (${type}), not ${init.expected}${excerpt}`);
    this.method = init.method;
    this.path = init.path;
    this.contentType = init.contentType;
    this.excerpt = init.excerpt;
  }
}

/** A report file could not be written (disk full, say). Its `.partial` name stays; the previous report is untouched. Exit 2. */
export class ReportWriteError extends IdsyncError {
  readonly path: string;
  readonly sysCode: string | undefined;
  constructor(path: string, cause: unknown) {
    const sysCode = (cause as NodeJS.ErrnoException | undefined)?.code;
    const why = sysCode === 'ENOSPC' ? 'ENOSPC: no space left on the device' : (sysCode ?? describeError(cause));
    super('E_REPORT', `cannot write the report file ${path} (${why}); the incomplete report keeps its .partial names and the previous report in that folder is unchanged`, { cause });
    this.path = path;
    this.sysCode = sysCode;
  }
}

/**
 * The ledger in the state dir could not be written (disk full, say). Nothing is sent without its
 * `start`, so every next row would fail alike: the run stops (exit 2) and the rerun resumes.
 */
export class LedgerWriteError extends IdsyncError {
  readonly sysCode: string | undefined;
  constructor(dir: string, cause: unknown) {
    const sysCode = (cause as NodeJS.ErrnoException | undefined)?.code;
    const why = sysCode === 'ENOSPC' ? 'ENOSPC: no space left on the device' : (sysCode ?? describeError(cause));
    super('E_STATE_DIR', `the ledger in ${dir} cannot be written (${why}); free space there or choose another --state-dir, then run the same command again`, { cause });
    this.sysCode = sysCode;
  }
}

/** The API could not be reached at the start (refused, DNS, no route, timeouts), after the login's retries. Exit 2. */
export class ApiUnreachableError extends IdsyncError {
  readonly sysCode: string | undefined;
  constructor(message: string, sysCode?: string, options?: { cause?: unknown }) {
    super('E_API_UNREACHABLE', message, options);
    this.sysCode = sysCode;
  }
}

/** The API answered the first login with something that is not a login answer (404, HTML, 5xx). Exit 2. */
export class ApiUnusableError extends IdsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_API_UNUSABLE', message, options);
  }
}

/** The API refused the credentials (authenticate answered 400/401/403). Fatal for the run. */
export class AuthRefusedError extends IdsyncError {
  readonly status: number | undefined;
  constructor(message: string, status?: number) {
    super('E_AUTH_REFUSED', message);
    this.status = status;
  }
}

/** The server's certificate could not be verified. Fatal for the run, never retried. */
export class TlsError extends IdsyncError {
  readonly tlsCode: string | undefined;
  constructor(message: string, tlsCode?: string, options?: { cause?: unknown }) {
    super('E_TLS', message, options);
    this.tlsCode = tlsCode;
  }
}

/** The API answered with a non-success status. */
export class HttpStatusError extends IdsyncError {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** A short, secret-free excerpt of the response body. */
  readonly bodyExcerpt: string;
  /** Parsed Retry-After in milliseconds, when the server sent one. */
  readonly retryAfterMs: number | undefined;
  /** True when the request body had been (at least partly) sent: the outcome on the server is unknown. */
  readonly requestSent: boolean;
  constructor(init: {
    method: string;
    path: string;
    status: number;
    bodyExcerpt?: string;
    retryAfterMs?: number;
    requestSent?: boolean;
  }) {
    const excerpt = init.bodyExcerpt ? `: ${init.bodyExcerpt}` : '';
    super('E_HTTP_STATUS', `${init.method} ${init.path} answered ${init.status}${excerpt}`);
    this.method = init.method;
    this.path = init.path;
    this.status = init.status;
    this.bodyExcerpt = init.bodyExcerpt ?? '';
    this.retryAfterMs = init.retryAfterMs;
    this.requestSent = init.requestSent ?? true;
  }
}

/**
 * The existence check before an upload (GET …/data, asked where an earlier attempt may have
 * stored the document) could not be made. Nothing was sent by this attempt: the row's error is
 * the check's, said as such, never the bare `GET … answered 503` that reads like the upload's.
 * Whether another try may help is the check's failure's business (classify() looks at `cause`).
 */
export class ExistenceCheckError extends IdsyncError {
  readonly documentId: string;
  constructor(documentId: string, cause: unknown) {
    super('E_CHECK_FAILED', `could not check whether document ${documentId} exists before sending it, so nothing was sent: ${describeError(cause)}`, { cause });
    this.documentId = documentId;
  }
}

/** The connection failed or broke (reset, refused, DNS). `requestSent` says whether the outcome is ambiguous. */
export class NetworkError extends IdsyncError {
  readonly method: string;
  readonly path: string;
  readonly sysCode: string | undefined;
  readonly requestSent: boolean;
  constructor(init: { method: string; path: string; sysCode?: string; requestSent: boolean; cause?: unknown }) {
    super('E_NETWORK', `${init.method} ${init.path} failed: ${init.sysCode ?? 'network error'}`, { cause: init.cause });
    this.method = init.method;
    this.path = init.path;
    this.sysCode = init.sysCode;
    this.requestSent = init.requestSent;
  }
}

export type TimeoutPhase = 'connect' | 'headers' | 'body';

export class TimeoutError extends IdsyncError {
  readonly method: string;
  readonly path: string;
  readonly phase: TimeoutPhase;
  readonly requestSent: boolean;
  constructor(init: { method: string; path: string; phase: TimeoutPhase; requestSent: boolean; cause?: unknown }) {
    super('E_TIMEOUT', `${init.method} ${init.path} timed out waiting for ${init.phase}`, { cause: init.cause });
    this.method = init.method;
    this.path = init.path;
    this.phase = init.phase;
    this.requestSent = init.requestSent;
  }
}

/** The API answered 2xx with something the contract does not allow (no token, not JSON, not an array). */
export class ProtocolError extends IdsyncError {
  readonly method: string;
  readonly path: string;
  /** What was wrong with the answer, with a safe excerpt of it when that helps. */
  readonly problem: string;
  constructor(init: { method: string; path: string; problem: string; cause?: unknown }) {
    super('E_PROTOCOL', `${init.method} ${init.path}: unexpected answer: ${init.problem}`, { cause: init.cause });
    this.method = init.method;
    this.path = init.path;
    this.problem = init.problem;
  }
}

/**
 * The publicId a row names is already stored with other content: sending it would replace or
 * duplicate a document (the API does not say which), so the row fails for good instead.
 */
export class DocumentConflictError extends IdsyncError {
  constructor(publicId: string, storedSha256: string, sha256: string) {
    super(
      'E_CONFLICT',
      `publicId ${publicId} is already stored with other content (sha256 ${storedSha256.slice(0, 12)}…, this file ${sha256.slice(0, 12)}…); give this row another publicId, or leave it empty to derive one from the content`,
    );
  }
}

/**
 * A job whose payload is not signed with this deployment's key, or was altered: refused before
 * anything is read or written (a process with write access to Redis alone must not be able to
 * make a worker upload a file or write one).
 */
export class JobRefusedError extends IdsyncError {
  constructor(message: string) {
    super('E_JOB_REFUSED', message);
  }
}

/**
 * A file to read or a folder to write lies (by its real path: links and `..` resolved) outside the
 * folders this process may touch (--allow-read, --allow-write): whoever may queue jobs must not
 * make a worker read or write anywhere its user can. Nothing was read or written; never retried.
 */
export class NotAllowedError extends IdsyncError {
  readonly path: string;
  /** The setting that keeps it out, as the user spells it. */
  readonly setting: '--allow-read' | '--allow-write';
  constructor(message: string, path: string, setting: '--allow-read' | '--allow-write') {
    super('E_NOT_ALLOWED', message);
    this.path = path;
    this.setting = setting;
  }
}

/** Redis refused a write because it is out of memory (maxmemory with noeviction). The run stops (exit 2). */
export class RedisOutOfMemoryError extends IdsyncError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('E_REDIS_OOM', message, options);
  }
}

/**
 * The row's work was done (an upload stored, say) but recording its result in Redis failed. Not
 * a failure of the row: the job is tried again, and the retry finds the work done.
 */
export class ResultNotRecordedError extends IdsyncError {
  constructor(cause: unknown) {
    super('E_RESULT_NOT_RECORDED', `the row's work was done but its result could not be recorded in Redis (${describeError(cause)}); it will be looked at again`, { cause });
  }
}

/**
 * What to do about a failure; decided by classify() in src/api/classify.ts, the one place that
 * knows (docs/architecture.md, "Habits"). `ambiguous`: a non-idempotent request (the upload) may have reached
 * the server, so the next try must ask whether the document exists before sending it again.
 */
export type Classification = (
  | { kind: 'retry' }
  | { kind: 'retry-after'; ms: number }
  | { kind: 'refresh-auth' }
  | { kind: 'permanent' }
  | { kind: 'fatal' }
) & { ambiguous: boolean };

/** A short, printable description of any thrown value, for logs and reports. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** A system error's code (ENOENT, ELOOP …) as Node sets it, or undefined. */
export function systemCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** `what file: CODE` as a FileError (the system error as its cause): whether it is retried follows the code. */
export function fileErrorOf(what: string, file: string, err: unknown): FileError {
  return new FileError(`${what} ${file}: ${systemCode(err) ?? String(err)}`, file, { cause: err });
}

export function errorCode(err: unknown): string {
  if (err instanceof IdsyncError) return err.code;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'E_INTERNAL';
}
