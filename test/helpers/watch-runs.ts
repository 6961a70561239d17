import { inject } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import type { SettingsInput } from '../../src/config/schema.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import type { IngestRecord } from '../../src/report/ingest-log.ts';
import { runWatch, type WatchRunOptions, type WatchRunResult } from '../../src/commands/watch/run-watch.ts';

export interface WatchArgs extends Partial<Omit<WatchRunOptions, 'config' | 'log' | 'signal' | 'dir'>> {
  dir: string;
  apiUrl: string;
  password: string;
  stateDir: string;
  reportDir: string;
  /** Root of the run's Redis keys (one per test; freshKeyPrefix() for a Redis whose state is gone). */
  keyPrefix: string;
  redisUrl?: string;
  flags?: SettingsInput;
  /** Default: silent. */
  log?: Logger;
}

export interface RunningWatch {
  records: IngestRecord[];
  polling: boolean;
  /** Resolves once `count` ingest lines were written (rejects after timeoutMs). */
  waitForRecords(count: number, timeoutMs?: number): Promise<IngestRecord[]>;
  /** Stops like SIGTERM would, and returns the run's result. */
  stop(): Promise<WatchRunResult>;
  done: Promise<WatchRunResult>;
}

/** Starts `idsync watch` in-process against a sandbox and the suite's Redis; resolves once the folder is watched. */
export async function startWatch(args: WatchArgs): Promise<RunningWatch> {
  const { dir, apiUrl, password, stateDir, reportDir, redisUrl, keyPrefix, flags, log, ...rest } = args;
  const config = loadConfig({
    env: {
      IDSYNC_API_URL: apiUrl,
      IDSYNC_USERNAME: 'migrator',
      IDSYNC_PASSWORD: password,
      REDIS_URL: redisUrl ?? inject('redisUrl'),
      IDSYNC_REDIS_PREFIX: keyPrefix,
      IDSYNC_STATE_DIR: stateDir,
      IDSYNC_REPORT_DIR: reportDir,
    },
    flags: { concurrency: 4, ...flags },
  });
  const controller = new AbortController();
  const records: IngestRecord[] = [];
  const waiters: Array<() => void> = [];
  let polling = false;
  let watching!: () => void;
  const started = new Promise<void>((resolve) => (watching = resolve));
  const done = runWatch({
    settleMs: 200,
    resultPollMs: 50,
    graceMs: 10_000,
    mounts: () => '',
    ...rest,
    dir,
    config,
    log: log ?? silentLogger(),
    signal: controller.signal,
    onIngest: (r) => {
      records.push(r);
      rest.onIngest?.(r);
      for (const w of waiters.splice(0)) w();
    },
    onWatching: (info) => {
      polling = info.polling;
      watching();
    },
  });
  await Promise.race([started, done.then(() => Promise.reject(new Error('watch ended before it started')))]);
  return {
    records,
    polling,
    done,
    async waitForRecords(count, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      while (records.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${records.length} of ${count} ingest records after ${timeoutMs} ms: ${JSON.stringify(records.slice(-3))}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 200);
        });
      }
      return records;
    },
    async stop() {
      controller.abort(new Error('interrupted by SIGTERM'));
      return done;
    },
  };
}
