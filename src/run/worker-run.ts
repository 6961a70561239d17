import { setTimeout as sleep } from 'node:timers/promises';
import { requireApiSettings, type Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { openRedis, type RedisHandle } from '../queue/connection.ts';
import { queueNameFor } from '../queue/queue-names.ts';
import { Ledger } from '../state/ledger.ts';
import { createApiClient, loginWithRetries, startConfiguredWorkers } from './job-context.ts';

export interface WorkerRunOptions {
  config: Config;
  log: Logger;
  signal: AbortSignal;
  heartbeatMs?: number;
  queueName?: string;
  graceMs?: number;
}

/**
 * `idsync worker`: takes jobs of every type from this API's queue until interrupted, then
 * finishes (or hands back) what is in flight. Logs a heartbeat so operators see it is alive.
 */
export async function runWorker(options: WorkerRunOptions): Promise<void> {
  const { config, log, signal } = options;
  const api = requireApiSettings(config);
  const client = createApiClient(config, api, log);
  let redis: RedisHandle | undefined;
  let ledger: Ledger | undefined;
  const queueName = options.queueName ?? queueNameFor(api.apiUrl);
  // Everything from the first request on is inside try: an interrupted login must close the
  // client, or its open request keeps the process alive until the server answers.
  try {
    await loginWithRetries(client, config.attempts, log, signal);
    redis = await openRedis({ redisUrl: config.redisUrl, stateDir: config.stateDir, log });
    ledger = await Ledger.open(config.stateDir, api.apiUrl, { log });
    const host = (await startConfiguredWorkers({ config, redis, client, ledger, apiUrl: api.apiUrl, queue: { name: queueName }, log }))!;
    log.info({ queue: queueName, redis: redis.where, concurrency: config.concurrency }, 'worker started: waiting for jobs');
    const started = Date.now();
    while (!signal.aborted) {
      await sleep(options.heartbeatMs ?? 30_000, undefined, { signal }).catch(() => {});
      if (!signal.aborted) log.info({ processed: host.processed(), uptimeSeconds: Math.round((Date.now() - started) / 1000) }, 'worker heartbeat');
    }
    log.info('worker stopping: finishing in-flight jobs');
    await host.close(options.graceMs ?? 30_000);
    log.info({ processed: host.processed() }, 'worker stopped');
  } finally {
    await client.close().catch(() => {});
    await ledger?.close().catch(() => {});
    await redis?.close().catch(() => {});
  }
}
