import type { Command } from 'commander';
import { runRuns } from '../commands/status/list-runs.ts';
import { UsageError } from '../errors.ts';
import { runStateCli } from './state-command.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const limit = opts.limit === undefined ? undefined : Number(opts.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError(`--limit must be a whole number of at least 1 (got ${JSON.stringify(opts.limit)})`);
  return runStateCli('runs', opts, ({ config, log }, signal) => runRuns({ config, log, signal, all: opts.all === true, json: opts.json === true, ...(limit ? { limit } : {}) }));
}
