import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { workerPool } from '../engine/run-services.ts';
import { PROCESS_ID, Session } from '../engine/session.ts';

export interface WorkerRunOptions {
  config: Config;
  log: Logger;
  signal: AbortSignal;
  heartbeatMs?: number;
  graceMs?: number;
  /** How often the list of runs to serve is looked at again. */
  servePollMs?: number;
}

/**
 * `idsync worker`: serves every running run of this API (and its control queue: archive
 * schedules) until interrupted, then finishes (or hands back) what is in flight. A run stopped by
 * its command (Ctrl-C, a fatal error) is no longer served; its rerun serves it again.
 */
export async function runWorker(options: WorkerRunOptions): Promise<void> {
  const { config, log, signal } = options;
  const session = await Session.open({ config, log, signal });
  try {
    const graceMs = options.graceMs ?? 30_000;
    const pool = workerPool(session, graceMs);
    const started = session.clock.now();
    const beat = () => session.store.noteWorker(PROCESS_ID, { queues: pool.served(), processed: pool.processed(), at: session.clock.now() }).catch(() => undefined);
    log.info({ redis: session.redis.where, concurrency: config.concurrency }, 'worker started: serving the running runs of this API');
    const heartbeats = (async () => {
      while (!signal.aborted) {
        await beat();
        await session.clock.sleep(options.heartbeatMs ?? 30_000, signal).catch(() => undefined);
        if (!signal.aborted) log.info({ processed: pool.processed(), runs: pool.served().length - 1, uptimeSeconds: Math.round((session.clock.now() - started) / 1000) }, 'worker heartbeat');
      }
    })();
    await pool.serveRuns(() => session.store.listRuns(), {
      pollMs: options.servePollMs ?? 2000,
      signal,
      graceMs,
      onChange: (served) => {
        log.info({ queues: served }, 'serving');
        void beat();
      },
    });
    await heartbeats;
    log.info('worker stopping: finishing in-flight jobs');
    await pool.close(graceMs);
    await session.store.forgetWorker(PROCESS_ID).catch(() => undefined);
    log.info({ processed: pool.processed() }, 'worker stopped');
  } finally {
    await session.close();
  }
}
