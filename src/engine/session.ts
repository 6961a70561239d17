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
import { JobSigner } from './job-signing.ts';

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
}

/** Identifies this process to operators: `idsync status` shows which workers serve a run. */
export const PROCESS_ID = `${hostname()}:${process.pid}`;

/**
 * What every command that talks to the API works with: the API client (logged in), Redis with
 * the API's store, this machine's ledger, and the key that signs jobs. Opened once per command,
 * closed once, on every path.
 */
export class Session {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly api: ApiSettings;
  readonly client: ApiClient;
  readonly signer: JobSigner;
  #redis: RedisHandle | undefined;
  #store: ApiStore | undefined;
  #ledger: Ledger | undefined;
  #queues = new Map<string, Queue>();
  #closers: Array<() => Promise<void>> = [];

  private constructor(options: SessionOptions, api: ApiSettings, client: ApiClient) {
    this.config = options.config;
    this.log = options.log;
    this.clock = options.clock ?? systemClock;
    this.api = api;
    this.client = client;
    this.signer = new JobSigner(api.password, api.apiUrl);
  }

  /**
   * Logs in (refused credentials and certificate problems stop at once; a reset or 5xx on the
   * way in is retried), opens Redis meanwhile (the private one takes a moment to start), then the
   * ledger. What was opened is closed again when a later step fails.
   */
  static async open(options: SessionOptions): Promise<Session> {
    const { config, log, signal } = options;
    const api = requireApiSettings(config);
    const client = createApiClient(config, api, log, { ...(options.clock ? { clock: options.clock } : {}), ...options.clientOptions });
    const session = new Session(options, api, client);
    const wantsState = options.state !== false;
    const redisOpening = wantsState ? openRedis({ redisUrl: config.redisUrl, redisCaFile: config.redisCaFile, stateDir: config.stateDir, log, allowInstall: options.allowInstallRedis }) : undefined;
    redisOpening?.catch(() => undefined); // awaited below; this only keeps an early failure from going unhandled
    try {
      await loginWithRetries(client, config.attempts, log, signal);
      log.info({ apiUrl: api.apiUrl, username: api.username }, 'logged in');
      if (redisOpening) {
        session.#redis = await redisOpening;
        log.info({ redis: session.#redis.where }, 'queue store ready');
        session.#store = new ApiStore(session.#redis.connect('session'), { apiUrl: api.apiUrl, root: config.redisPrefix, lockTtlMs: config.lockDurationMs, replicas: session.#redis.replicas });
        // The first write: a user without access to idsync's keys, or a full Redis, is told here.
        await session.#store.register().catch((err: unknown) => {
          throw describeRedisFailure(err, session.#redis!.where);
        });
        session.#ledger = await Ledger.open(config.stateDir, api.apiUrl, { log });
      }
      return session;
    } catch (err) {
      session.#redis ??= await redisOpening?.catch(() => undefined);
      await session.close();
      throw err;
    }
  }

  get redis(): RedisHandle {
    if (!this.#redis) throw new Error('this session has no Redis (dry run)');
    return this.#redis;
  }

  get store(): ApiStore {
    if (!this.#store) throw new Error('this session has no Redis (dry run)');
    return this.#store;
  }

  get ledger(): Ledger {
    if (!this.#ledger) throw new Error('this session has no ledger (dry run)');
    return this.#ledger;
  }

  /** The session's own connection (meta, queues); workers make their own. */
  get connection(): Redis {
    return this.store.redis;
  }

  /** A BullMQ queue of this API (a run's, or the control queue), made once per session. */
  queue(name: string): Queue {
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: this.connection, prefix: this.store.queuePrefix });
      this.#queues.set(name, queue);
    }
    return queue;
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
    for (const close of this.#closers.splice(0).reverse()) await close().catch((err: unknown) => this.log.debug({ err }, 'close step failed'));
    for (const queue of this.#queues.values()) await queue.close().catch(() => undefined);
    this.#queues.clear();
    await Promise.all([this.client.close().catch(() => undefined), this.#ledger?.close().catch(() => undefined), this.#redis?.close().catch(() => undefined)]);
  }
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
