import type { Config } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { workerPool } from '../engine/run-services.ts';
import { PROCESS_ID, Session } from '../engine/session.ts';
import { CONTROL_QUEUE } from '../store/keys.ts';
import { readSchedules, scheduleLine } from './settings/schedules.ts';

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
  sayConfinement(config, log);
  const session = await Session.open({ config, log, signal });
  try {
    const graceMs = options.graceMs ?? 30_000;
    const pool = workerPool(session, graceMs, 'worker');
    const started = session.clock.now();
    log.info({ redis: session.redis.where, concurrency: config.concurrency, worker: PROCESS_ID }, 'worker started: serving the running runs of this API');
    await saySchedules(session, log);
    // The pool writes this process's heartbeat into Redis (`idsync status` lists it); this is the log's.
    const heartbeats = (async () => {
      while (!signal.aborted) {
        await session.clock.sleep(options.heartbeatMs ?? 30_000, signal).catch(() => undefined);
        if (!signal.aborted) log.info({ processed: pool.processed(), runs: pool.served().length - 1, uptimeSeconds: Math.round((session.clock.now() - started) / 1000) }, 'worker heartbeat');
      }
    })();
    await pool.serveRuns(() => session.store.listRuns(), {
      pollMs: options.servePollMs ?? 2000,
      signal,
      graceMs,
      onChange: (served) => log.info({ queues: served }, 'serving'),
    });
    await heartbeats;
    log.info('worker stopping: finishing in-flight jobs');
    await pool.close(graceMs);
    log.info({ processed: pool.processed() }, 'worker stopped');
  } finally {
    await session.close();
  }
}

/**
 * A worker also runs the API's cron schedules (archive ticks, on its control queue), whoever
 * registered them: it says so at start, so a schedule left behind by a stopped `archive --cron`
 * does not run unnoticed (`idsync schedules remove NAME` removes one).
 */
async function saySchedules(session: Session, log: Logger): Promise<void> {
  try {
    const schedules = await readSchedules(session.queue(CONTROL_QUEUE));
    if (schedules.length === 0) log.info('no cron schedules stored for this API: this worker serves runs only');
    else log.info({ schedules: schedules.map(scheduleLine) }, `this worker also runs ${schedules.length} cron schedule${schedules.length === 1 ? '' : 's'} of this API (\`idsync schedules\` lists them, \`idsync schedules remove NAME\` removes one)`);
  } catch (err) {
    log.warn({ err }, 'cannot list the cron schedules of this API');
  }
}

/**
 * A worker does whatever a correctly signed job asks, and anyone with the API password can sign
 * one: without --allow-read/--allow-write that reaches every file its user can read or write.
 * Kept working as before (not an error), but said once at start.
 */
export function sayConfinement(config: Config, log: Logger): void {
  if (!config.allowRead && !config.allowWrite) {
    log.warn(
      'this worker is not confined: it reads any file and writes into any folder its user can, for any job signed with the API password; set --allow-read (the folders whose files may be uploaded) and --allow-write (the folders exports may write into) [env IDSYNC_ALLOW_READ, IDSYNC_ALLOW_WRITE]',
    );
    return;
  }
  const roots = { allowRead: config.allowRead?.roots ?? 'any', allowWrite: config.allowWrite?.roots ?? 'any' };
  if (!config.allowRead) log.warn(roots, 'this worker is confined for writing only: uploads may read any file its user can; set --allow-read [env IDSYNC_ALLOW_READ]');
  else if (!config.allowWrite) log.warn(roots, 'this worker is confined for reading only: downloads may write into any folder its user can; set --allow-write [env IDSYNC_ALLOW_WRITE]');
  else log.info(roots, 'worker confined: uploads read and downloads write only inside these folders');
}
