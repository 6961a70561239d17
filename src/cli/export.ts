import type { Command } from 'commander';
import { runJobCommand } from '../run/job-run.ts';
import { ExitCode } from './exit-codes.ts';
import { installInterrupt } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { out, ...rest } = opts;
  const { config, log } = setupRuntime('export', rest);
  const interrupt = installInterrupt(log);
  try {
    const { exitCode } = await runJobCommand({ command: 'export', manifest: String(args[0]), outDir: String(out), config, log, signal: interrupt.signal });
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
