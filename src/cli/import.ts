import type { Command } from 'commander';
import { runJobCommand } from '../run/job-run.ts';
import { ExitCode } from './exit-codes.ts';
import { installInterrupt } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { config, log } = setupRuntime('import', opts);
  const interrupt = installInterrupt(log);
  try {
    const { exitCode } = await runJobCommand({ command: 'import', manifest: String(args[0]), config, log, signal: interrupt.signal });
    return exitCode;
  } catch (err) {
    // Ctrl-C while logging in or starting Redis: nothing was queued yet; say so, exit 130.
    if (interrupt.reason()) {
      log.warn('interrupted before the run started; nothing was queued');
      return ExitCode.Interrupted;
    }
    throw err;
  } finally {
    interrupt.dispose();
  }
}
