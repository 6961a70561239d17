import type { Command } from 'commander';
import { cancelRun } from '../commands/status/cancel-run.ts';
import { runStateCli } from './state-command.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  return runStateCli('cancel', opts, async ({ config, log }, signal) => (await cancelRun({ config, log, signal, run: String(args[0]), force: opts.force === true, all: opts.all === true })).exitCode);
}
