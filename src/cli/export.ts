import type { Command } from 'commander';
import { runJobCli } from './job-command.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { out, ...settings } = opts;
  return runJobCli('export', String(args[0]), settings, String(out));
}
