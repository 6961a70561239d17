import type { Command } from 'commander';
import { runVerify } from '../commands/verify/run-verify.ts';
import { runInterruptible } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { out, remote, ...settings } = opts;
  const { config, log } = setupRuntime('verify', settings);
  return runInterruptible(log, 'finishing the checks in flight, then writing a partial report', async (signal) => {
    const { exitCode } = await runVerify({ input: String(args[0]), ...(typeof out === 'string' ? { outDir: out } : {}), remote: remote === true, config, log, signal });
    return exitCode;
  });
}
