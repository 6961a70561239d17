import type { Config } from '../../config/load.ts';
import type { Logger } from '../../log.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { Session } from '../../engine/session.ts';
import { storesToRead } from '../status/state-session.ts';
import { checkExposure, DEFAULT_LISTEN, parseListen, readAuthToken } from './dashboard-access.ts';
import { startDashboard, type Dashboard } from './dashboard-server.ts';

export interface DashboardRunOptions {
  config: Config;
  log: Logger;
  /** Aborted on Ctrl-C / SIGTERM: the dashboard stops. */
  signal: AbortSignal;
  listen?: string;
  authTokenFile?: string;
  allowActions?: boolean;
  all?: boolean;
  out?: (line: string) => void;
  /** Called once it listens (tests). */
  onListening?: (dashboard: Dashboard) => void;
}

/**
 * `idsync dashboard [--listen 127.0.0.1:8080]`: a web dashboard of this Redis's runs and queues
 * (idsync's pages and bull-board), read-only unless --allow-actions, on loopback unless
 * --auth-token-file guards it. Reads Redis only: no login to the API. Runs until interrupted.
 */
export async function runDashboard(o: DashboardRunOptions): Promise<number> {
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const listen = parseListen(o.listen ?? DEFAULT_LISTEN);
  const auth = o.authTokenFile ? readAuthToken(o.authTokenFile) : undefined;
  checkExposure(listen, auth?.token);
  if (auth?.warning) o.log.warn(auth.warning);
  const session = await Session.open({ config: o.config, log: o.log, signal: o.signal, login: false });
  try {
    const all = o.all === true || !o.config.apiUrl;
    const dashboard = await startDashboard({
      session,
      stores: () => storesToRead(session, all),
      listen,
      ...(auth ? { token: auth.token } : {}),
      allowActions: o.allowActions === true,
      log: o.log,
    });
    out(`dashboard: ${dashboard.url}/ (${o.allowActions ? 'bull-board actions allowed' : 'read-only'}${auth ? '; log in with any user name and the token as password' : '; this machine only'}); Ctrl-C stops it`);
    o.onListening?.(dashboard);
    await new Promise<void>((resolve) => {
      if (o.signal.aborted) return resolve();
      o.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    await dashboard.close();
    return ExitCode.Ok;
  } finally {
    await session.close();
  }
}
