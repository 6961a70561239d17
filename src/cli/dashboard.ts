import type { Command } from 'commander';
import { runDashboard } from '../commands/dashboard/run-dashboard.ts';
import { runStateCli } from './state-command.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  return runStateCli('dashboard', opts, ({ config, log }, signal) =>
    runDashboard({
      config,
      log,
      signal,
      ...(typeof opts.listen === 'string' ? { listen: opts.listen } : {}),
      ...(typeof opts.authTokenFile === 'string' ? { authTokenFile: opts.authTokenFile } : {}),
      allowActions: opts.allowActions === true,
      all: opts.all === true,
    }),
  );
}
