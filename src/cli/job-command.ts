import { runJobCommand, type JobCommand } from '../run/job-run.ts';
import { ExitCode } from './exit-codes.ts';
import { installInterrupt } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

/** What `idsync import` and `idsync export` share: settings, interrupt handling, the run. */
export async function runJobCli(command: JobCommand, manifest: string, opts: Record<string, unknown>, outDir?: string): Promise<number> {
  const { config, log } = setupRuntime(command, opts);
  const interrupt = installInterrupt(log);
  try {
    const { exitCode } = await runJobCommand({ command, manifest, ...(outDir ? { outDir } : {}), config, log, signal: interrupt.signal });
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
