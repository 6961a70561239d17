import type { Command } from 'commander';
import { runJobCli } from './job-command.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  return runJobCli('import', String(args[0]), opts);
}
