import type { Command } from 'commander';
import { runWorker } from '../commands/worker.ts';
import { ExitCode } from '../engine/outcome.ts';
import { runInterruptible } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { config, log } = setupRuntime('worker', opts);
  return runInterruptible(log, 'finishing in-flight jobs, then stopping', async (signal) => {
    await runWorker({ config, log, signal });
    // An interrupted command exits 130 (README, "Exit codes") once in-flight work is finished or handed back
    // (under systemd, add SuccessExitStatus=130).
    return ExitCode.Interrupted;
  });
}
