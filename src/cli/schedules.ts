import type { Command } from 'commander';
import { runSchedules } from '../commands/settings/schedules.ts';
import { UsageError } from '../errors.ts';
import { runStateCli } from './state-command.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const [action, name] = args as Array<string | undefined>;
  if (action !== undefined && action !== 'remove') throw new UsageError(`unknown schedules action ${JSON.stringify(action)}: use \`idsync schedules\` to list, \`idsync schedules remove NAME\` to remove one`);
  if (action === 'remove' && !name) throw new UsageError('idsync schedules remove NAME: name the schedule (`idsync schedules` lists them)');
  return runStateCli('schedules', opts, ({ config, log }, signal) => runSchedules({ config, log, signal, json: opts.json === true, ...(action === 'remove' ? { remove: name! } : {}) }));
}
