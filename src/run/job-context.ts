import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient, type ApiClientOptions } from '../api/client.ts';
import { classify } from '../api/classify.ts';
import { retryDelay } from '../pacing/backoff.ts';
import type { ApiSettings, Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import type { RedisHandle } from '../queue/connection.ts';
import { DocumentLocks, StoredDocuments } from '../queue/document-lock.ts';
import { apiKey } from '../queue/queue-names.ts';
import { RunStore } from '../queue/run-store.ts';
import type { Ledger } from '../state/ledger.ts';
import type { JobContext } from '../../jobs/job-types.ts';
import { systemClock, type Clock } from '../pacing/clock.ts';
import { Queue } from 'bullmq';
import { applyQueueRateLimit, startWorkerHost, type WorkerHost } from '../queue/worker-host.ts';

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

export function createJobContext(options: { redis: RedisHandle; client: ApiClient; ledger: Ledger; apiUrl: string; log: Logger; lockDurationMs?: number; clock?: Clock }): JobContext {
  const connection = options.redis.connect('jobs', { autoPipelining: true });
  const api = apiKey(options.apiUrl);
  const runs = new Map<string, RunStore>();
  return {
    client: options.client,
    ledger: options.ledger,
    locks: new DocumentLocks(connection, api, options.lockDurationMs),
    stored: new StoredDocuments(connection, api),
    run(runId: string) {
      let store = runs.get(runId);
      if (!store) {
        store = new RunStore(connection, runId);
        runs.set(runId, store);
      }
      return store;
    },
    log: options.log,
    redis: connection,
    clock: options.clock ?? systemClock,
  };
}

/**
 * The first login of a run: refused credentials and certificate problems stop the run at
 * once (exit 2), but a reset, timeout or 5xx on the way in is retried with the usual backoff.
 */
export async function loginWithRetries(client: ApiClient, attempts: number, log: Logger, signal?: AbortSignal): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.login(signal);
      return;
    } catch (err) {
      const c = classify(err);
      const delay = c.kind === 'fatal' || c.kind === 'permanent' || attempt >= attempts ? 0 : retryDelay(attempt, c, Math.random);
      if (delay <= 0 || signal?.aborted) throw err;
      log.warn({ err, attempt, retryInMs: delay }, 'login failed; retrying');
      await sleep(delay, undefined, signal ? { signal } : {});
    }
  }
}

export interface ConfiguredWorkersOptions {
  config: Config;
  redis: RedisHandle;
  client: ApiClient;
  ledger: Ledger;
  apiUrl: string;
  log: Logger;
  clock?: Clock;
  /** The queue the command feeds; `idsync worker`, which always works, gives only its name. */
  queue: Queue | { name: string };
}

/**
 * What every command that runs jobs does: with --workers 1 (the default) this process works
 * too, with the settings' concurrency, attempts, rate and lock timings; with --workers 0 it only
 * sets the queue's global rate limit and leaves the work to `idsync worker` processes.
 */
export async function startConfiguredWorkers(options: ConfiguredWorkersOptions): Promise<WorkerHost | undefined> {
  const { config } = options;
  if (config.workers === 0 && options.queue instanceof Queue) {
    await applyQueueRateLimit(options.queue, config.rate, options.log);
    return undefined;
  }
  return startWorkerHost({
    redis: options.redis,
    queueName: options.queue.name,
    concurrency: config.concurrency,
    ...(config.concurrencyMode === 'auto' ? { adaptive: options.client } : {}),
    attempts: config.attempts,
    ...(config.rate ? { rate: config.rate } : {}),
    ctx: createJobContext({ redis: options.redis, client: options.client, ledger: options.ledger, apiUrl: options.apiUrl, log: options.log, lockDurationMs: config.lockDurationMs, ...(options.clock ? { clock: options.clock } : {}) }),
    log: options.log,
    lockDurationMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
  });
}

/**
 * The end of every command that runs jobs, on every path: workers first (they finish or hand
 * back their jobs), then the queue, the API client, the ledger and Redis (the private one stops).
 * Each step runs even when an earlier one failed.
 */
export async function closeRunResources(r: {
  host?: WorkerHost | undefined;
  queue?: { close(): Promise<void> } | undefined;
  client: ApiClient;
  ledger?: Ledger | undefined;
  redis?: RedisHandle | undefined;
  graceMs: number;
}): Promise<void> {
  await r.host?.close(r.graceMs).catch(() => undefined);
  await r.queue?.close().catch(() => undefined);
  await r.client.close().catch(() => undefined);
  await r.ledger?.close().catch(() => undefined);
  await r.redis?.close().catch(() => undefined);
}
