import { runInterruptible } from './interrupt.ts';
import { setupRuntime, type Runtime } from './runtime.ts';

/**
 * What the commands that read state share (runs, status, cancel, limits, schedules, dashboard):
 * settings and a logger, and Ctrl-C as a plain stop (it ends `status --watch` and the dashboard).
 */
export async function runStateCli(command: string, opts: Record<string, unknown>, body: (runtime: Runtime, signal: AbortSignal) => Promise<number>): Promise<number> {
  const runtime = setupRuntime(command, opts);
  return runInterruptible(runtime.log, 'stopping', (signal) => body(runtime, signal));
}

