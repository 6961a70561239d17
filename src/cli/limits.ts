import type { Command } from 'commander';
import { runLimits } from '../commands/settings/limits.ts';
import { runStateCli } from './state-command.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  return runStateCli('limits', opts, ({ config, log }, signal) => runLimits({ config, log, signal, clear: opts.clear === true, all: opts.all === true, json: opts.json === true }));
}
