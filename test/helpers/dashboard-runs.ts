import { inject } from 'vitest';
import type { Dashboard } from '../../src/commands/dashboard/dashboard-server.ts';
import { runDashboard } from '../../src/commands/dashboard/run-dashboard.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';

export interface RunningDashboard {
  dashboard: Dashboard;
  /** Stops it as Ctrl-C would, and waits until it has. */
  stop(): Promise<void>;
}

/** `idsync dashboard` in-process on the suite's Redis under `keyPrefix`, on a free loopback port; resolves once it listens. */
export async function startDashboard(keyPrefix: string, options: { authTokenFile?: string } = {}): Promise<RunningDashboard> {
  const controller = new AbortController();
  let ready: (d: Dashboard) => void = () => undefined;
  const listening = new Promise<Dashboard>((resolve) => (ready = resolve));
  const done = runDashboard({
    config: loadConfig({ env: { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: keyPrefix } }),
    log: silentLogger(),
    signal: controller.signal,
    listen: '127.0.0.1:0',
    ...(options.authTokenFile ? { authTokenFile: options.authTokenFile } : {}),
    out: () => undefined,
    onListening: ready,
  });
  const stop = async () => {
    controller.abort();
    await done;
  };
  const dashboard = await Promise.race([listening, done.then(() => Promise.reject(new Error('the dashboard stopped')))]);
  return { dashboard, stop };
}
