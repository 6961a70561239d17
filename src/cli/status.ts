import type { Command } from 'commander';
import { runStatus } from '../commands/status/run-status.ts';
import { runStateCli } from './state-command.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const runArg = typeof args[0] === 'string' ? args[0] : undefined;
  const tty = process.stdout.isTTY === true;
  return runStateCli('status', opts, ({ config, log }, signal) =>
    runStatus({
      config,
      log,
      signal,
      ...(runArg ? { run: runArg } : {}),
      watch: opts.watch === true,
      json: opts.json === true,
      all: opts.all === true,
      // A terminal is redrawn in place; a pipe gets one block per frame.
      ...(tty ? { clear: () => process.stdout.write('\x1b[H\x1b[2J') } : {}),
    }),
  );
}
