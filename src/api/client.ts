import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { Pool, type Dispatcher } from 'undici';
import { apiUrlProblem } from '../config/api-url.ts';
import { readCaPem } from '../config/ca-file.ts';
import { AuthRefusedError, BadContentError, ConfigError, FileChangedError, FileError, HttpStatusError, IdsyncError, ProtocolError } from '../errors.ts';
import { scrubSecrets, silentLogger, type Logger } from '../log.ts';
import type { Secret } from '../config/secret.ts';
import { AdaptivePace } from '../pacing/adaptive-pace.ts';
import { ConcurrencyLimit, type LimitChange, type Permit, type RequestOutcome } from '../pacing/concurrency-limit.ts';
import { RequestSpacer } from '../pacing/request-spacer.ts';
import { systemClock, type Clock } from '../pacing/clock.ts';
import { USER_AGENT } from '../version.ts';
import { cutText } from '../text.ts';
import { ApiHealth, type ApiHealthSnapshot } from './api-health.ts';
import { classify, isConnectionReset, isCredentialRefusal, isNotFound, isSuccess, overloadOf } from './classify.ts';
import { fileNameFromContentDisposition } from './content-disposition.ts';
import { hasJpegSignature, isJpegContentType, JPEG_SIGNATURE_BYTES } from './jpeg-content.ts';
import { OutFolder, resolveInside } from '../outputs/out-dir.ts';
import { partFileName } from '../outputs/part-files.ts';
import { multipartBody, type MultipartBody } from './multipart-body.ts';
import { parseRetryAfter } from './retry-after.ts';
import { TokenSource, type IssuedToken } from './token-source.ts';
import { chunkStreamed } from '../memory.ts';
import { toTransportError, type RequestContext } from './transport-error.ts';
import type { DetectionItem, DetectionQuery, DownloadDest, DownloadPath, DownloadResult, PersonRecord, ResponseEvent, ResponseMeta, UploadInput } from './types.ts';
import { endpointOf } from './endpoints.ts';
import { ThrottleEpisodes } from './throttle-episodes.ts';

export type { ConfinedDest, DetectionItem, DetectionQuery, DownloadDest, DownloadPath, DownloadResult, PersonRecord, ResponseEvent, ResponseMeta, UploadInput } from './types.ts';

export interface ApiClientOptions {
  /** Base URL, path prefix included (`https://x.econnectcloud.com/identities`). */
  apiUrl: string;
  username: string;
  password: Secret;
  /** PEM file whose CA certificate(s) are trusted IN ADDITION to the system CAs. */
  caFile?: string;
  /** Turns certificate verification off (the CLI logs the warning). */
  insecure?: boolean;
  /** Pool size (keep-alive connections to the API); default 8, pass the concurrency setting (the maximum in auto mode). */
  connections?: number;
  /**
   * `fixed` (default): the pool's `connections` bound the requests in flight, as they always did.
   * `auto`: a ConcurrencyLimit learns how many the API takes, between 1 and `connections`.
   */
  concurrencyMode?: 'fixed' | 'auto';
  connectTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** Longest silence while a body streams (idle time, not a total). */
  bodyTimeoutMs?: number;
  log?: Logger;
  clock?: Clock;
  /** Injectable for tests; when given, the client neither configures nor closes it. */
  dispatcher?: Dispatcher;
  /** Renew this long before `exp`; default min(max(30 s, 10 % of lifetime), 50 % of lifetime). */
  renewAheadMs?: number;
  /** Most requests per second this process starts (--rate); unlimited when absent. */
  rate?: number;
  /**
   * Told about every answer and every failed request (metrics): called synchronously on the
   * request path, so it must be cheap and must not throw. The API layer knows no metrics library.
   */
  onResponse?: (event: ResponseEvent) => void;
}

export const CLIENT_DEFAULTS = {
  connections: 8,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 120_000,
  bodyTimeoutMs: 60_000,
  keepAliveTimeoutMs: 4_000,
} as const;

export interface ClientStats {
  /** HTTP requests sent (logins, renewals and the client's own resend of a GET included). */
  requests: number;
  logins: number;
  renewals: number;
  /** Token refreshes caused by a 401 (one per refresh, however many calls shared it). */
  refreshesOn401: number;
  /** Answers that carried Retry-After and paused the process. */
  throttled: number;
  /** Over-capacity answers: 503, 429, 504, timeouts, reset or refused connections (classify.ts's overloadOf). */
  overloaded: number;
  /** Requests allowed in flight now (the fixed setting, or the adaptive limit). */
  concurrencyLimit: number;
}

type Query = Record<string, string | number | boolean | undefined>;

interface RequestSpec {
  method: 'GET' | 'POST';
  /** API path without the base prefix, e.g. `/api/v1/people/x`. */
  path: string;
  query?: Query;
  json?: unknown;
  /** Builds a FRESH multipart body for each attempt (a sent stream cannot be replayed). */
  form?: () => Promise<MultipartBody>;
}

const EXCERPT_READ_LIMIT = 4096;
const EXCERPT_LENGTH = 200;

/**
 * The eConnect Identities API over one undici Pool (keep-alive, `connections` sockets).
 * Every response body is consumed or destroyed. Retries here are limited to what
 * docs/architecture.md ("Habits") allows at this level: one token refresh + resend on 401, one resend of an
 * idempotent GET on a connection reset before any response byte. Everything else is
 * thrown as a typed error for the job level to classify().
 */
export class ApiClient {
  readonly pace: AdaptivePace;
  readonly #origin: string;
  readonly #prefix: string;
  readonly #username: string;
  readonly #password: Secret;
  readonly #dispatcher: Dispatcher;
  readonly #ownsDispatcher: boolean;
  readonly #headersTimeoutMs: number;
  readonly #bodyTimeoutMs: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #spacer: RequestSpacer | undefined;
  readonly #tokens: TokenSource;
  readonly #fixedConcurrency: number;
  readonly #limit: ConcurrencyLimit | undefined;
  /** The limit last logged at info level (see #onLimitChange). */
  #loggedLimit = 0;
  readonly #health = new ApiHealth();
  readonly #onResponse: ((event: ResponseEvent) => void) | undefined;
  readonly #throttles: ThrottleEpisodes;
  #requests = 0;
  #throttled = 0;
  #overloaded = 0;

  constructor(options: ApiClientOptions) {
    const problem = apiUrlProblem(options.apiUrl);
    if (problem) throw new ConfigError(`--api-url ${JSON.stringify(options.apiUrl)} ${problem}`, '--api-url');
    const url = new URL(options.apiUrl);
    this.#origin = url.origin;
    // The prefix (`/identities` behind the cloud proxy) is kept on EVERY call: paths are
    // concatenated, never resolved with new URL('/api/...', base), which would drop it.
    this.#prefix = url.pathname.replace(/\/+$/, '');
    this.#username = options.username;
    this.#password = options.password;
    this.#log = options.log ?? silentLogger();
    this.#clock = options.clock ?? systemClock;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? CLIENT_DEFAULTS.headersTimeoutMs;
    this.#bodyTimeoutMs = options.bodyTimeoutMs ?? CLIENT_DEFAULTS.bodyTimeoutMs;
    this.#fixedConcurrency = options.connections ?? CLIENT_DEFAULTS.connections;
    if (options.concurrencyMode === 'auto') {
      this.#limit = new ConcurrencyLimit({ max: this.#fixedConcurrency, clock: this.#clock });
      this.#loggedLimit = this.#limit.limit();
      this.#limit.onChange((change) => this.#onLimitChange(change));
    }
    if (options.dispatcher) {
      this.#dispatcher = options.dispatcher;
      this.#ownsDispatcher = false;
    } else {
      this.#dispatcher = new Pool(this.#origin, {
        connections: this.#fixedConcurrency,
        keepAliveTimeout: CLIENT_DEFAULTS.keepAliveTimeoutMs,
        headersTimeout: this.#headersTimeoutMs,
        bodyTimeout: this.#bodyTimeoutMs,
        connect: {
          timeout: options.connectTimeoutMs ?? CLIENT_DEFAULTS.connectTimeoutMs,
          ...tlsOptions(options),
        },
      });
      this.#ownsDispatcher = true;
    }
    this.pace = new AdaptivePace(this.#clock);
    this.#onResponse = options.onResponse;
    this.#throttles = new ThrottleEpisodes(this.#clock, this.#log);
    this.#spacer = options.rate ? new RequestSpacer(options.rate, this.#clock) : undefined;
    this.#tokens = new TokenSource({
      clock: this.#clock,
      log: this.#log,
      renewAheadMs: options.renewAheadMs,
      exchange: { login: () => this.#authenticate(), renew: (token) => this.#renewToken(token) },
    });
  }

  /** The base URL as given (path prefix included, no trailing slash), for messages. */
  get baseUrl(): string {
    return this.#origin + this.#prefix;
  }

  /** Logs in now, so that wrong credentials or an untrusted certificate stop the run at once. */
  async login(signal?: AbortSignal): Promise<void> {
    await this.#tokens.login(signal);
  }

  async uploadDocument(input: UploadInput, signal?: AbortSignal): Promise<{ bytes: number }> {
    const filePath = input.filePath;
    let bytes: number;
    if (input.data) {
      bytes = input.data.length;
    } else {
      try {
        const info = await stat(filePath);
        if (!info.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
        bytes = info.size;
      } catch (err) {
        throw fileError('cannot read', filePath, err);
      }
      if (input.expect && bytes !== input.expect.bytes) throw new FileChangedError(filePath, `${bytes} bytes now, ${input.expect.bytes} when it was hashed`);
    }
    const fileName = input.fileName ?? path.basename(filePath);
    const fields = [
      { name: 'personId', value: input.personId },
      { name: 'name', value: input.name },
      ...(input.description !== undefined ? [{ name: 'description', value: input.description }] : []),
      { name: 'publicId', value: input.publicId },
    ];
    const file = { field: 'file', fileName, contentType: input.contentType ?? 'application/octet-stream', size: bytes };
    const form = async (): Promise<MultipartBody> => {
      if (input.data) return multipartBody(fields, { ...file, data: input.data });
      try {
        // Streamed from disk, so memory does not grow with the file.
        const verify = { path: filePath, ...(input.expect ? { sha256: input.expect.sha256 } : {}) };
        return multipartBody(fields, { ...file, handle: await open(filePath, 'r'), verify });
      } catch (err) {
        throw fileError('cannot read', filePath, err);
      }
    };
    const res = await this.#authed({ method: 'POST', path: '/api/v1/people/fileDocuments/upload', form }, signal);
    await discard(res.body);
    return { bytes };
  }

  /** Reads the status only: 200 → true, 404 → false, anything else throws. */
  async documentExists(personId: string, documentId: string, signal?: AbortSignal): Promise<boolean> {
    try {
      const res = await this.#authed({ method: 'GET', path: `/api/v1/people/${seg(personId)}/fileDocuments/${seg(documentId)}/data` }, signal);
      // Only the status matters; the document itself (maybe large) is not read.
      release(res.body);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /**
   * The sha256 and size of a stored document's bytes, streamed through the hash (nothing kept,
   * nothing written); undefined when the API answers 404.
   */
  hashDocument(personId: string, documentId: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number } | undefined> {
    return this.#hash({ method: 'GET', path: `/api/v1/people/${seg(personId)}/fileDocuments/${seg(documentId)}/data` }, signal);
  }

  /** The same for an enrollment photo (the bytes as served: what an export or archive wrote). */
  hashEnrollmentPhoto(faceId: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number } | undefined> {
    return this.#hash({ method: 'GET', path: `/api/v1/people/enrollmentPhoto/${seg(faceId)}` }, signal);
  }

  /** The same for a detection photo. */
  hashDetectionPhoto(faceId: string, detectionId: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number } | undefined> {
    return this.#hash({ method: 'GET', path: `/api/v1/people/detectionPhoto/${seg(faceId)}/${seg(detectionId)}` }, signal);
  }

  async #hash(spec: RequestSpec, signal?: AbortSignal): Promise<{ sha256: string; bytes: number } | undefined> {
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#authed(spec, signal);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      for await (const chunk of res.body) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
        chunkStreamed((chunk as Buffer).length);
      }
    } catch (err) {
      release(res.body);
      throw toTransportError(err, { method: 'GET', path: this.#fullPath(spec), origin: this.#origin });
    }
    return { sha256: hash.digest('hex'), bytes };
  }

  downloadDocument(personId: string, documentId: string, dest: DownloadDest, signal?: AbortSignal): Promise<DownloadResult> {
    return this.#download(`/api/v1/people/${seg(personId)}/fileDocuments/${seg(documentId)}/data`, dest, signal);
  }

  /** Only JPEG bytes are saved: anything else answered with 200 is BadContentError (E_BAD_CONTENT). */
  downloadEnrollmentPhoto(faceId: string, dest: DownloadDest, signal?: AbortSignal): Promise<DownloadResult> {
    return this.#download(`/api/v1/people/enrollmentPhoto/${seg(faceId)}`, dest, signal, 'jpeg');
  }

  /** Only JPEG bytes are saved, as for enrollment photos. */
  downloadDetectionPhoto(faceId: string, detectionId: string, dest: DownloadDest, signal?: AbortSignal): Promise<DownloadResult> {
    return this.#download(`/api/v1/people/detectionPhoto/${seg(faceId)}/${seg(detectionId)}`, dest, signal, 'jpeg');
  }

  listDetectionsByPerson(personId: string, query?: DetectionQuery, signal?: AbortSignal): Promise<DetectionItem[]> {
    return this.#getArray<DetectionItem>(`/api/v1/people/detections/personId/${seg(personId)}`, detectionQuery(query), signal);
  }

  listDetectionsByFace(faceId: string, query?: DetectionQuery, signal?: AbortSignal): Promise<DetectionItem[]> {
    return this.#getArray<DetectionItem>(`/api/v1/people/detections/faceId/${seg(faceId)}`, detectionQuery(query), signal);
  }

  listPeopleByTag(tagId: string, signal?: AbortSignal): Promise<PersonRecord[]> {
    return this.#getArray<PersonRecord>('/api/v1/people', { tagId }, signal);
  }

  async getPerson(personId: string, signal?: AbortSignal): Promise<PersonRecord> {
    const spec: RequestSpec = { method: 'GET', path: `/api/v1/people/${seg(personId)}` };
    const res = await this.#authed(spec, signal);
    const data = await this.#readJson(res, spec);
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw new ProtocolError({ method: spec.method, path: this.#fullPath(spec), problem: 'expected a JSON object (person record)' });
    }
    return data as PersonRecord;
  }

  /** Is the API answering this process's requests, and since when not (the watch's heartbeat). */
  health(): ApiHealthSnapshot {
    return this.#health.snapshot();
  }

  /** Whether the login holds (refused credentials do not), without a request: for /healthz. */
  loginState(): { ok: boolean; detail: string } {
    return this.#tokens.state();
  }

  stats(): ClientStats {
    return { requests: this.#requests, ...this.#tokens.stats(), throttled: this.#throttled, overloaded: this.#overloaded, concurrencyLimit: this.concurrencyLimit() };
  }

  /** Requests allowed in flight now: the fixed --concurrency, or the adaptive limit of `auto`. */
  concurrencyLimit(): number {
    return this.#limit?.limit() ?? this.#fixedConcurrency;
  }

  /** The adaptive limit's state (undefined with a fixed --concurrency). */
  concurrencyStats(): ReturnType<ConcurrencyLimit['stats']> | undefined {
    return this.#limit?.stats();
  }

  /** Calls back with the new limit whenever `auto` changes it (never with a fixed --concurrency); returns the unsubscribe. */
  onConcurrencyChange(listener: (limit: number) => void): () => void {
    return this.#limit?.onChange((change) => listener(change.to)) ?? (() => undefined);
  }

  /**
   * Requests still open when the client closes were abandoned by their callers (Ctrl-C during a
   * slow login, say): wait briefly for them, then drop the connections rather than keep the
   * process alive until the server answers.
   */
  async close(graceMs = 1_000): Promise<void> {
    if (!this.#ownsDispatcher) return;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), graceMs);
    });
    const closed = this.#dispatcher.close().then(() => false);
    if (await Promise.race([closed, timedOut])) await this.#dispatcher.destroy();
    clearTimeout(timer);
  }

  // --- requests -------------------------------------------------------------------------

  #fullPath(spec: RequestSpec): string {
    return this.#prefix + spec.path;
  }

  /** An authenticated call: token first, one refresh + resend on 401. Returns a 2xx response, body unread. */
  async #authed(spec: RequestSpec, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const token = await this.#tokens.get(signal);
    try {
      return await this.#send(spec, token, signal);
    } catch (err) {
      if (classify(err).kind !== 'refresh-auth') throw err;
      this.#log.debug({ method: spec.method, path: this.#fullPath(spec) }, 'token rejected (401); refreshing once');
      const fresh = await this.#tokens.refreshAfterRejection(token, signal);
      return await this.#send(spec, fresh, signal);
    }
  }

  /** One request (plus one resend of a GET whose connection reset before any answer). */
  async #send(spec: RequestSpec, token: string | undefined, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const fullPath = this.#fullPath(spec);
    const ctx: RequestContext = { method: spec.method, path: fullPath, origin: this.#origin };
    for (let attempt = 1; ; attempt++) {
      // The permit first: a request waiting out a pause or its rate slot keeps its place in line.
      const permit = await this.#limit?.acquire(signal);
      let sent: { res: Dispatcher.ResponseData; latencyMs: number };
      const sending = this.#clock.now();
      try {
        sent = await this.#dispatch(spec, token, signal);
      } catch (thrown) {
        const err = toTransportError(thrown, ctx);
        this.#settle(permit, err);
        this.#health.failed(err, this.#clock.now());
        // Stale keep-alive sockets reset on reuse; a GET is safe to send once more (docs/architecture.md, "Habits": two retry levels).
        if (attempt === 1 && spec.method === 'GET' && isConnectionReset(err)) {
          this.#log.debug({ method: spec.method, path: fullPath }, 'connection reset before any answer; sending the GET once more');
          continue;
        }
        const code = (err as { code?: string }).code ?? 'E_INTERNAL';
        this.#observe(spec.method, fullPath, { error: code }, this.#clock.now() - sending);
        this.#log.debug({ method: spec.method, path: fullPath, code }, 'request failed');
        throw err;
      }
      const { res, latencyMs } = sent;
      const ms = this.#observe(spec.method, fullPath, { status: res.statusCode }, latencyMs);
      this.#log.debug({ method: spec.method, path: fullPath, status: res.statusCode, ms }, 'response');
      if (isSuccess(res.statusCode)) {
        this.#health.answered(this.#clock.now());
        this.#throttles.answered();
        // The slot stays taken until the body is read or dropped: a download still occupies the server.
        if (permit) res.body.once('close', () => permit.release({ kind: 'answered', latencyMs }));
        return res;
      }
      const err = new HttpStatusError({
        method: spec.method,
        path: fullPath,
        status: res.statusCode,
        bodyExcerpt: await this.#excerpt(res.body),
        retryAfterMs: parseRetryAfter(res.headers['retry-after'], this.#clock.now()),
        requestSent: true,
      });
      this.#settle(permit, err, latencyMs);
      this.#health.failed(err, this.#clock.now());
      const classification = classify(err);
      if (classification.kind === 'retry-after') {
        this.#throttled++;
        // The pause says when to send again; the limit says how many (it was cut once above, and
        // the other answers of the same round trip do not cut it again): the two do not add up.
        this.pace.throttle(classification.ms);
        this.#throttles.throttled({ method: spec.method, path: fullPath, status: err.status }, classification.ms);
      }
      throw err;
    }
  }

  /** Waits out a pause and the rate, builds a fresh body, sends; latency is counted from the send to the answer's headers. */
  async #dispatch(spec: RequestSpec, token: string | undefined, signal: AbortSignal | undefined): Promise<{ res: Dispatcher.ResponseData; latencyMs: number }> {
    await this.pace.wait(signal);
    await this.#spacer?.wait(signal);
    const headers: Record<string, string> = { 'user-agent': USER_AGENT, accept: '*/*' };
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    let body: string | Buffer | MultipartBody['body'] | undefined;
    if (spec.json !== undefined) {
      body = JSON.stringify(spec.json);
      headers['content-type'] = 'application/json';
    } else if (spec.form) {
      const form = await spec.form();
      body = form.body;
      headers['content-type'] = form.contentType;
      headers['content-length'] = String(form.length);
    }
    const started = this.#clock.now();
    this.#requests++;
    const res = await this.#dispatcher.request({
      origin: this.#origin,
      path: this.#fullPath(spec) + queryString(spec.query),
      method: spec.method,
      headers,
      body: body ?? null,
      signal,
      headersTimeout: this.#headersTimeoutMs,
      bodyTimeout: this.#bodyTimeoutMs,
    });
    return { res, latencyMs: this.#clock.now() - started };
  }

  /** Counts an over-capacity failure and gives the permit back with what the failure says about capacity. */
  #settle(permit: Permit | undefined, err: unknown, latencyMs?: number): void {
    const reason = overloadOf(err);
    if (reason) this.#overloaded++;
    if (!permit) return;
    let outcome: RequestOutcome;
    if (reason) outcome = { kind: 'overload', reason };
    else if (err instanceof HttpStatusError) outcome = { kind: 'answered', ...(latencyMs !== undefined ? { latencyMs } : {}) };
    else outcome = { kind: 'ignore' };
    permit.release(outcome);
  }

  /** Info when the limit moved far from the last level logged at info, debug otherwise: a log line per round trip would drown the rest. */
  #onLimitChange(change: LimitChange): void {
    const moved = Math.abs(change.to - this.#loggedLimit);
    const fields = { concurrency: change.to, from: change.from, reason: change.reason };
    if (moved < Math.max(4, this.#loggedLimit * 0.5)) {
      this.#log.debug(fields, 'concurrency limit changed');
      return;
    }
    this.#loggedLimit = change.to;
    const why = change.reason === 'overload' ? 'the API refused requests for capacity' : change.reason === 'latency' ? 'the API answers more slowly' : 'the API keeps up';
    this.#log.info(fields, `concurrency limit now ${change.to}: ${why}`);
  }

  /** Tells the observer (metrics) about one request's end; returns its duration in ms. */
  #observe(method: string, fullPath: string, outcome: { status: number } | { error: string }, ms: number): number {
    if (this.#onResponse) {
      try {
        this.#onResponse({ method, endpoint: endpointOf(method, fullPath).template, ...outcome, ms });
      } catch {
        // An observer's failure must never fail a request.
      }
    }
    return ms;
  }

  /** At most EXCERPT_LENGTH characters of an error body, without anything secret. The body is always released. */
  async #excerpt(body: Dispatcher.ResponseData['body']): Promise<string> {
    let text = '';
    try {
      for await (const chunk of body) {
        text += (chunk as Buffer).toString('utf8');
        if (text.length >= EXCERPT_READ_LIMIT) break;
      }
    } catch {
      // Error bodies are opaque and optional: a broken one still leaves the status to report.
    } finally {
      release(body);
    }
    return this.#safeExcerpt(text);
  }

  /** Secrets out, whitespace collapsed, unprintable bytes shown as `.`, at most EXCERPT_LENGTH characters. */
  #safeExcerpt(text: string): string {
    const password = this.#password.reveal();
    if (password.length >= 4) text = text.split(password).join('[redacted]');
    const flat = scrubSecrets(text).replace(/\s+/g, ' ').replace(/[\u0000-\u001f\u007f\ufffd]/g, '.').trim();
    return flat.length > EXCERPT_LENGTH ? `${cutText(flat, EXCERPT_LENGTH - 1)}…` : flat;
  }

  async #readJson(res: Dispatcher.ResponseData, spec: RequestSpec): Promise<unknown> {
    const fullPath = this.#fullPath(spec);
    let text: string;
    try {
      text = await res.body.text();
    } catch (err) {
      throw toTransportError(err, { method: spec.method, path: fullPath, origin: this.#origin });
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      // Often a proxy's or a web app's HTML page: say what it was.
      const type = headerValue(res.headers['content-type']);
      const what = text.trim() === '' ? 'an empty body' : `the body is not JSON: ${JSON.stringify(this.#safeExcerpt(text.slice(0, EXCERPT_READ_LIMIT)))}`;
      throw new ProtocolError({ method: spec.method, path: fullPath, problem: `${what} (${type ? `Content-Type ${type}` : 'no Content-Type'})`, cause: err });
    }
  }

  async #getArray<T>(apiPath: string, query: Query, signal?: AbortSignal): Promise<T[]> {
    const spec: RequestSpec = { method: 'GET', path: apiPath, query };
    const res = await this.#authed(spec, signal);
    const data = await this.#readJson(res, spec);
    if (!Array.isArray(data)) throw new ProtocolError({ method: 'GET', path: this.#fullPath(spec), problem: 'expected a JSON array' });
    return data as T[];
  }

  async #authenticate(): Promise<IssuedToken> {
    const spec: RequestSpec = { method: 'POST', path: '/api/v1/authenticate', json: { username: this.#username, password: this.#password.reveal() } };
    let res: Dispatcher.ResponseData;
    try {
      res = await this.#send(spec, undefined);
    } catch (err) {
      if (err instanceof HttpStatusError && isCredentialRefusal(err.status)) {
        throw new AuthRefusedError(
          `the API refused the credentials of user "${this.#username}" (authenticate answered ${err.status}); check --username and the password (IDSYNC_PASSWORD or IDSYNC_PASSWORD_FILE)`,
          err.status,
        );
      }
      throw err;
    }
    return this.#tokenFrom(res, spec);
  }

  async #renewToken(token: string): Promise<IssuedToken> {
    const spec: RequestSpec = { method: 'GET', path: '/api/v1/renewToken' };
    const res = await this.#send(spec, token);
    return this.#tokenFrom(res, spec);
  }

  /** The token and the server's clock when it answered (its `Date`): expiry is judged by the server's time. */
  async #tokenFrom(res: Dispatcher.ResponseData, spec: RequestSpec): Promise<IssuedToken> {
    const data = await this.#readJson(res, spec);
    const token = (data as { token?: unknown } | null)?.token;
    if (typeof token !== 'string' || token === '') {
      throw new ProtocolError({ method: spec.method, path: this.#fullPath(spec), problem: 'no "token" in the answer' });
    }
    const date = Date.parse(headerValue(res.headers.date) ?? '');
    return Number.isFinite(date) ? { token, serverDateMs: date } : { token };
  }

  /**
   * Streams a body to `<dir>/.<name>.<random>.part` (sha256 and size computed on the way),
   * fsyncs and renames it to the final name. On any failure the temp file is removed, so a final
   * name never holds a partial file. A confined destination is written inside its folder held
   * open from creation to rename (src/outputs/out-dir.ts), so no link swapped in meanwhile leads
   * the file out of --out, and the folder is fsynced too (the new name is durable on return). `expect: 'jpeg'` refuses anything but JPEG bytes before a file
   * is created.
   */
  async #download(apiPath: string, dest: DownloadDest, signal?: AbortSignal, expect?: 'jpeg'): Promise<DownloadResult> {
    const spec: RequestSpec = { method: 'GET', path: apiPath };
    const res = await this.#authed(spec, signal);
    const ctx: RequestContext = { method: 'GET', path: this.#fullPath(spec), origin: this.#origin };
    const meta: ResponseMeta = {};
    const contentType = headerValue(res.headers['content-type']);
    if (contentType) meta.contentType = contentType;
    const fileName = fileNameFromContentDisposition(res.headers['content-disposition']);
    if (fileName) meta.fileName = fileName;
    const confined = typeof dest === 'object' ? dest : undefined;
    const wanted = confined ? confined.path : (dest as DownloadPath);
    const chunks = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    let head: Buffer[] = [];
    let finalPath: string;
    let folder: OutFolder | undefined;
    let tempPath: string;
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      if (expect === 'jpeg') head = await this.#jpegStart(chunks, ctx, contentType);
      finalPath = path.resolve(typeof wanted === 'function' ? wanted(meta) : wanted);
      const dir = path.dirname(finalPath);
      const tempName = partFileName(path.basename(finalPath));
      if (confined) {
        // The name may come from the answer (a document's extension): it must still be under the root.
        resolveInside(confined.root, path.relative(confined.root, finalPath));
        folder = await OutFolder.open(confined.root, dir);
        tempPath = folder.entry(tempName);
      } else {
        tempPath = path.join(dir, tempName);
        try {
          await mkdir(dir, { recursive: true });
        } catch (err) {
          throw fileError('cannot write', dir, err);
        }
      }
      try {
        handle = await open(tempPath, 'wx');
      } catch (err) {
        throw fileError('cannot write', path.join(dir, tempName), err);
      }
    } catch (err) {
      release(res.body);
      await folder?.close();
      throw err;
    }
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      try {
        for (;;) {
          const next = head.shift() ?? (await nextChunk(chunks));
          if (next === undefined) break;
          hash.update(next);
          bytes += next.length;
          chunkStreamed(next.length);
          // Awaiting each write is the back-pressure: the socket is read no faster than the disk takes it.
          await writeAll(handle, next, finalPath);
        }
      } catch (err) {
        if (err instanceof IdsyncError) throw err;
        throw toTransportError(err, ctx);
      }
      try {
        await handle.sync();
        await handle.close();
        if (folder) {
          // As late as Node allows: the check and the rename are the last two steps (see OutFolder.verify).
          await folder.verify();
          await rename(tempPath, folder.entry(path.basename(finalPath)));
        } else {
          await rename(tempPath, finalPath);
        }
      } catch (err) {
        throw fileError('cannot write', finalPath, err);
      }
      // A confined destination is a final name (an export's file): the new name is durable only once
      // its folder is, and the caller records the row as done when this returns. Concurrent
      // downloads into the folder share its fsync (OutFolder.syncEntries). A plain path is a step
      // of the caller's own (the archive renames it again).
      if (folder) await folder.syncEntries();
    } catch (err) {
      release(res.body);
      await handle.close().catch(() => undefined);
      await rm(tempPath, { force: true }).catch(() => undefined);
      throw err;
    } finally {
      await folder?.close();
    }
    const result: DownloadResult = { path: finalPath, bytes, sha256: hash.digest('hex') };
    if (meta.contentType) result.contentType = meta.contentType;
    if (meta.fileName) result.fileName = meta.fileName;
    return result;
  }

  /**
   * The first chunks of a photo, once they prove it is a JPEG (Content-Type, when sent, and the
   * signature). Anything else throws BadContentError with what came instead.
   */
  async #jpegStart(chunks: AsyncIterator<Buffer>, ctx: RequestContext, contentType: string | undefined): Promise<Buffer[]> {
    const head: Buffer[] = [];
    let got = 0;
    let ended = false;
    if (isJpegContentType(contentType)) {
      while (got < JPEG_SIGNATURE_BYTES) {
        const next = await nextChunk(chunks).catch((err: unknown) => {
          throw toTransportError(err, ctx);
        });
        if (next === undefined) {
          ended = true;
          break;
        }
        head.push(next);
        got += next.length;
      }
      if (hasJpegSignature(Buffer.concat(head))) return head;
    }
    // What came instead, for the report: a short, secret-free excerpt of it.
    let text = Buffer.concat(head).toString('utf8');
    try {
      for (let next; text.length < EXCERPT_READ_LIMIT && !ended && (next = await nextChunk(chunks)) !== undefined; ) text += next.toString('utf8');
    } catch {
      // Only the excerpt is lost.
    }
    throw new BadContentError({
      method: ctx.method,
      path: ctx.path,
      expected: 'a JPEG photo',
      contentType,
      excerpt: this.#safeExcerpt(text),
      problem: got === 0 && ended ? 'an empty body' : 'other content',
    });
  }
}

async function nextChunk(chunks: AsyncIterator<Buffer>): Promise<Buffer | undefined> {
  const next = await chunks.next();
  return next.done ? undefined : next.value;
}

type Body = Dispatcher.ResponseData['body'];

/** Drops a body without reading it (closes that connection). The listener keeps undici's abort error from going unhandled. */
function release(body: Body): void {
  body.on('error', () => undefined);
  body.destroy();
}

/** Reads and drops a small body so the keep-alive connection can be reused; a large one is cut. */
async function discard(body: Body): Promise<void> {
  try {
    await body.dump({ limit: 64 * 1024 });
  } catch {
    release(body);
  }
}

async function writeAll(handle: Awaited<ReturnType<typeof open>>, buf: Buffer, filePath: string): Promise<void> {
  try {
    let offset = 0;
    while (offset < buf.length) {
      const { bytesWritten } = await handle.write(buf, offset, buf.length - offset);
      offset += bytesWritten;
    }
  } catch (err) {
    throw fileError('cannot write', filePath, err);
  }
}

function fileError(what: string, filePath: string, err: unknown): IdsyncError {
  if (err instanceof IdsyncError) return err;
  const code = (err as NodeJS.ErrnoException).code ?? 'error';
  return new FileError(`${what} ${filePath}: ${code}`, filePath, { cause: err });
}

function tlsOptions(options: ApiClientOptions): { secureContext?: SecureContext; rejectUnauthorized?: boolean } {
  const tls: { secureContext?: SecureContext; rejectUnauthorized?: boolean } = {};
  if (options.caFile) {
    // `ca` REPLACES Node's trust store; keep the system CAs and add the user's. One context for
    // every connection: built per connection, parsing ~140 root certificates cost ~15 ms of CPU each.
    tls.secureContext = createSecureContext({ ca: [...rootCertificates, readCaPem(options.caFile, '--ca-file')] });
  }
  if (options.insecure) tls.rejectUnauthorized = false;
  return tls;
}

/** One path segment, encoded: ids come from manifests and must not add segments or queries. */
function seg(value: string): string {
  return encodeURIComponent(value);
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function queryString(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value));
  const text = params.toString();
  return text ? `?${text}` : '';
}

function detectionQuery(query: DetectionQuery | undefined): Query {
  return {
    skip: query?.skip,
    take: query?.take,
    epochStartMs: query?.epochStartMs,
    epochEndMs: query?.epochEndMs,
    dateAscending: query?.dateAscending,
  };
}
