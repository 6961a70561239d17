import type { FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { ApiClient, type ApiClientOptions } from '../api/client.ts';
import { classify } from '../api/classify.ts';
import { loginFailure } from '../api/login-failure.ts';
import { requireApiSettings, type ApiSettings, type Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { retryDelay } from '../pacing/backoff.ts';
import { systemClock, type Clock } from '../pacing/clock.ts';
import { Ledger } from '../store/ledger/ledger.ts';
import { ApiStore } from '../store/api-store.ts';
import { describeRedisFailure, openRedis, type RedisHandle } from '../store/redis/connection.ts';
import { parseRedisTarget } from '../store/redis/redis-target.ts';
import { JobSigner } from './job-signing.ts';
import { ProcessMetrics, type PoolView } from './metrics.ts';
import { MetricsServer, type HealthCheck, type HealthChecks } from './metrics-server.ts';

export interface SessionOptions {
  config: Config;
  log: Logger;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  signal: AbortSignal;
  clock?: Clock;
  /** Test hooks for the API client (a recording dispatcher, say). */
  clientOptions?: Partial<ApiClientOptions>;
  /** Install redis-server with apt-get when it is missing (the demo and the test suite only). */
  allowInstallRedis?: boolean;
  /** false: log in only (a dry run needs neither Redis nor the ledger). */
  state?: boolean;
  /** false: no login, only Redis, never a private Redis of its own (see Session.#attach). */
  login?: boolean;
}

/** Identifies this process to operators: `idsync status` shows which workers serve a run. */
export const PROCESS_ID = `${hostname()}:${process.pid}`;

/** /healthz gives up on a Redis PING after this long. */
const HEALTH_PING_MS = 2_000;

/**
 * What every command that talks to the API works with: the API client (logged in), Redis with
 * the API's store, this machine's ledger, and the key that signs jobs. Opened once per command,
 * closed once, on every path.
 */
export class Session {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly #api: ApiSettings | undefined;
  readonly #client: ApiClient | undefined;
  readonly #signer: JobSigner | undefined;
  /** This process's metrics, when --metrics-listen is given. */
  readonly metrics: ProcessMetrics | undefined;
  #metricsServer: MetricsServer | undefined;
  #pool: PoolView | undefined;
  #opened = false;
  #closing = false;
  #wantsState = true;
  #redis: RedisHandle | undefined;
  #connection: Redis | undefined;
  #store: ApiStore | undefined;
  #ledger: Ledger | undefined;
  #queues = new Map<string, Queue>();
  /** Whether this Redis had served the API before this session. */
  #knownToRedis = true;
  #stateEpoch: string | undefined;
  #redisForgot = false;
  #closers: Array<() => Promise<void>> = [];

  private constructor(options: SessionOptions, api?: ApiSettings, client?: ApiClient, metrics?: ProcessMetrics) {
    this.config = options.config;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.#api = api;
    this.#client = client;
    this.#signer = api ? new JobSigner(api.password, api.apiUrl) : undefined;
    this.metrics = metrics;
  }

  get api(): ApiSettings {
    if (!this.#api) throw new Error('this session did not log in (login: false)');
    return this.#api;
  }

  get client(): ApiClient {
    if (!this.#client) throw new Error('this session did not log in (login: false)');
    return this.#client;
  }

  get signer(): JobSigner {
    if (!this.#signer) throw new Error('this session did not log in (login: false)');
    return this.#signer;
  }

  /**
   * Logs in (refused credentials and certificate problems stop at once; a reset or 5xx on the
   * way in is retried), opens Redis meanwhile (the private one takes a moment to start), then the
   * ledger. What was opened is closed again when a later step fails.
   */
  static async open(options: SessionOptions): Promise<Session> {
    if (options.login === false) return Session.#attach(options);
    const { config, log, signal } = options;
    const api = requireApiSettings(config);
    // Without state (a dry run) Redis is not reached, but a REDIS_URL the real run could not use
    // is still refused now, with the rest of the settings.
    if (options.state === false && config.redisUrl) parseRedisTarget(config.redisUrl, config.redisCaFile ? { caFile: config.redisCaFile } : {});
    const metrics = config.metricsListen ? new ProcessMetrics({ concurrency: config.concurrency }) : undefined;
    const client = createApiClient(config, api, log, {
      ...(options.clock ? { clock: options.clock } : {}),
      ...(metrics ? { onResponse: (event) => metrics.request(event) } : {}),
      ...options.clientOptions,
    });
    const session = new Session(options, api, client, metrics);
    const wantsState = options.state !== false;
    session.#wantsState = wantsState;
    if (metrics && config.metricsListen) {
      // First, so that /healthz answers (503) while the login and Redis are still on their way.
      try {
        session.#metricsServer = await MetricsServer.start({ ...config.metricsListen, metrics, health: () => session.#health(), ready: () => session.#readiness(), log });
      } catch (err) {
        await client.close().catch(() => undefined);
        throw err;
      }
      metrics.watchClient(client);
    }
    const redisOpening = wantsState ? openRedis({ redisUrl: config.redisUrl, redisCaFile: config.redisCaFile, stateDir: config.stateDir, log, allowInstall: options.allowInstallRedis }) : undefined;
    redisOpening?.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
    try {
      await loginWithRetries(client, config.attempts, log, signal);
      log.info({ apiUrl: api.apiUrl, username: api.username }, 'logged in');
      if (redisOpening) {
        session.#redis = await redisOpening;
        log.info({ redis: session.#redis.where }, 'queue store ready');
        session.#connection = session.#redis.connect('session');
        session.#store = session.storeFor(api.apiUrl);
        // The first write: a user without access to idsync's keys, or a full Redis, is told here.
        session.#knownToRedis = await session.#store.register().catch((err: unknown) => {
          throw describeRedisFailure(err, session.#redis!.where, session.#redis!.isPrivate);
        });
        session.#ledger = await Ledger.open(config.stateDir, api.apiUrl, { log, ...(metrics ? { datasync: timedDatasync(metrics) } : {}) });
        session.#stateEpoch = await session.#store.epoch();
        const seen = await session.#ledger.epochsSeen();
        session.#redisForgot = seen.length > 0 && !seen.includes(session.#stateEpoch);
        if (metrics) metrics.lookAtRuns((runId) => session.#runView(runId));
      }
      session.#opened = true;
      return session;
    } catch (err) {
      session.#redis ??= await redisOpening?.catch(() => undefined);
      await session.close();
      throw err;
    }
  }

  /**
   * login: false. Redis only, and never a Redis of its own: REDIS_URL, or the private Redis of a
   * command running now (openRedis attachOnly). No login, no ledger, no job signing: for commands
   * that read or tidy state (`idsync status`, `runs`, `cancel`, `dashboard`). `store` is there when
   * an API URL is configured; storeFor() reaches any other API this Redis has served.
   */
  static async #attach(options: SessionOptions): Promise<Session> {
    const { config, log } = options;
    const session = new Session(options);
    session.#opened = true;
    try {
      session.#redis = await openRedis({ redisUrl: config.redisUrl, redisCaFile: config.redisCaFile, stateDir: config.stateDir, log, attachOnly: true });
      session.#connection = session.#redis.connect('session');
      if (config.apiUrl) session.#store = session.storeFor(config.apiUrl);
      return session;
    } catch (err) {
      await session.close();
      throw err;
    }
  }

  /** The store of an API (by its URL) over this session's connection. */
  storeFor(apiUrl: string): ApiStore {
    return new ApiStore(this.connection, { apiUrl, root: this.config.redisPrefix, lockTtlMs: this.config.lockDurationMs, replicas: this.#redis?.replicas ?? 0 });
  }

  get redis(): RedisHandle {
    if (!this.#redis) throw new Error('this session has no Redis (dry run)');
    return this.#redis;
  }

  get store(): ApiStore {
    if (!this.#store) throw new Error(this.#redis ? 'this session has no API URL' : 'this session has no Redis (dry run)');
    return this.#store;
  }

  get ledger(): Ledger {
    if (!this.#ledger) throw new Error('this session has no ledger (dry run)');
    return this.#ledger;
  }

  /**
   * True when neither this Redis nor this machine's ledger has any record of the API: a new
   * machine, a new Redis, or the first run ever. Documents uploaded before from elsewhere would
   * then only be found by asking the API (--check-existing).
   */
  async knowsNothing(): Promise<boolean> {
    if (this.#knownToRedis) return false;
    return (await this.ledger.stats()).documents === 0;
  }

  /**
   * True when this state dir finished uploads against another Redis state for the API than the
   * one Redis holds now (Redis emptied or replaced, another --redis-prefix): documents stored then
   * may be stored, unknown to this Redis, and not all in this ledger (another machine's, or found
   * stored through Redis). A run that uploads then looks each document up first (--check-existing).
   */
  get redisForgot(): boolean {
    return this.#redisForgot;
  }

  /**
   * Notes that this state dir has finished uploads against the Redis state held now: called when
   * an upload run has every row done, so a run interrupted while looking documents up still looks
   * them up when it resumes.
   */
  async rememberRedisState(): Promise<void> {
    if (!this.#stateEpoch || !this.#ledger) return;
    await this.#ledger.noteEpoch(this.#stateEpoch).catch((err: unknown) => this.log.warn({ err }, 'cannot note the Redis state in the state dir; the next run looks documents up on the server again'));
    this.#redisForgot = false;
  }

  /** The session's own connection (meta, queues); workers make their own. */
  get connection(): Redis {
    if (!this.#connection) throw new Error('this session has no Redis (dry run)');
    return this.#connection;
  }

  /** A BullMQ queue of this API (a run's, or the control queue), or of another API's store; made once per session. */
  queue(name: string, store: ApiStore = this.store): Queue {
    const key = `${store.queuePrefix}\0${name}`;
    let queue = this.#queues.get(key);
    if (!queue) {
      queue = new Queue(name, { connection: this.connection, prefix: store.queuePrefix });
      this.#queues.set(key, queue);
    }
    return queue;
  }

  /** This process's workers: /readyz waits for them to serve, the metrics count their jobs. */
  observePool(pool: PoolView): void {
    this.#pool = pool;
    this.metrics?.watchPool(pool);
  }

  /** Base URL of the metrics server (`--metrics-listen`), once it listens. */
  get metricsUrl(): string | undefined {
    return this.#metricsServer?.url;
  }

  /** /healthz: Redis answers a PING (when this command uses it), the login holds. */
  async #health(): Promise<HealthChecks> {
    const login = this.client.loginState();
    if (!this.#wantsState) return { redis: { ok: true, detail: 'not used (dry run)' }, login };
    const store = this.#store;
    if (!store) return { redis: { ok: false, detail: this.#closing ? 'closed' : 'not connected yet' }, login };
    const started = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const redis = await Promise.race([
      store.redis.ping().then(
        (): HealthCheck => ({ ok: true, detail: `PING answered in ${Date.now() - started} ms` }),
        (err: unknown): HealthCheck => ({ ok: false, detail: `PING failed: ${(err as Error).message}` }),
      ),
      new Promise<HealthCheck>((resolve) => {
        timer = setTimeout(() => resolve({ ok: false, detail: `no answer to PING within ${HEALTH_PING_MS} ms` }), HEALTH_PING_MS);
      }),
    ]);
    clearTimeout(timer);
    return { redis, login };
  }

  /** /readyz: open, not closing, and its workers serve (or it has none: --workers 0). */
  #readiness(): HealthCheck {
    if (this.#closing) return { ok: false, detail: 'closing' };
    if (!this.#opened) return { ok: false, detail: 'opening: logging in, connecting to Redis' };
    if (!this.#wantsState || this.config.workers === 0) return { ok: true, detail: 'open (no workers in this process)' };
    const served = this.#pool?.served().length ?? 0;
    return served > 0 ? { ok: true, detail: `serving ${served} queue(s)` } : { ok: false, detail: 'open; its workers do not serve yet' };
  }

  #runView(runId: string) {
    const run = this.store.run(runId);
    return {
      counts: () => run.counts(),
      total: async () => (await run.getMeta())?.total,
      queueCounts: async () => {
        const c = await this.queue(runId).getJobCounts('waiting', 'active', 'delayed');
        return { waiting: c.waiting ?? 0, active: c.active ?? 0, delayed: c.delayed ?? 0 };
      },
    };
  }

  /** Runs at close, before the queues, the client, the ledger and Redis (workers, say). */
  onClose(close: () => Promise<void>): void {
    this.#closers.push(close);
  }

  /**
   * The end of every command, on every path: what registered with onClose (workers finish or
   * hand back their jobs), then the queues, then together the API client, the ledger and Redis
   * (the private one stops): independent of each other, and the client's sockets take ~10 ms to
   * close, a tenth of a small import. Each step runs even when an earlier one failed.
   */
  async close(): Promise<void> {
    this.#closing = true;
    for (const close of this.#closers.splice(0).reverse()) await close().catch((err: unknown) => this.log.debug({ err }, 'close step failed'));
    await this.#metricsServer?.close().catch(() => undefined);
    this.metrics?.close();
    for (const queue of this.#queues.values()) await queue.close().catch(() => undefined);
    this.#queues.clear();
    await Promise.all([this.#client?.close().catch(() => undefined), this.#ledger?.close().catch(() => undefined), this.#redis?.close().catch(() => undefined)]);
  }
}

/** The ledger's fsync, timed for the metrics. */
function timedDatasync(metrics: ProcessMetrics): (handle: FileHandle) => Promise<void> {
  return async (handle) => {
    const started = performance.now();
    try {
      await handle.datasync();
    } finally {
      metrics.fsync(performance.now() - started);
    }
  };
}

export function createApiClient(config: Config, api: ApiSettings, log: Logger, extra: Partial<ApiClientOptions> = {}): ApiClient {
  return new ApiClient({
    apiUrl: api.apiUrl,
    username: api.username,
    password: api.password,
    ...(config.caFile ? { caFile: config.caFile } : {}),
    insecure: config.insecure,
    connections: config.concurrency,
    concurrencyMode: config.concurrencyMode,
    connectTimeoutMs: config.connectTimeoutMs,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    ...(config.rate ? { rate: config.rate } : {}),
    log,
    ...extra,
  });
}

/**
 * The first login of a command: refused credentials and certificate problems stop at once
 * (exit 2), but a reset, timeout or 5xx on the way in is retried with the usual backoff. What
 * still fails says why the command cannot start (loginFailure: exit 2).
 */
export async function loginWithRetries(client: ApiClient, attempts: number, log: Logger, signal?: AbortSignal): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.login(signal);
      return;
    } catch (err) {
      const c = classify(err);
      const delay = c.kind === 'fatal' || c.kind === 'permanent' || attempt >= attempts ? 0 : retryDelay(attempt, c, Math.random);
      if (delay <= 0 || signal?.aborted) throw signal?.aborted ? err : loginFailure(err, client.baseUrl, attempt);
      log.warn({ err: { message: (err as Error).message }, attempt, retryInMs: delay }, 'login failed; retrying');
      // A timer that keeps the process alive: nothing else may be pending while the login waits.
      await sleep(delay, undefined, signal ? { signal } : {});
    }
  }
}
