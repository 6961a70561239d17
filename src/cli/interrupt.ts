import { ExitCode } from '../engine/outcome.ts';
import type { Logger } from '../log.ts';

export interface Interrupt {
  /** Aborted at the first SIGINT/SIGTERM: stop taking work, finish or hand back what is in flight. */
  signal: AbortSignal;
  /** The signal's name once interrupted. */
  reason(): string | undefined;
  dispose(): void;
}

/**
 * First Ctrl-C / SIGTERM asks the command to stop gracefully (it then exits 130 after writing
 * a partial report); a second one gives up waiting and exits 130 at once. Either way the
 * private Redis stops too, through its watchdog.
 */
export function installInterrupt(
  log: Logger,
  {
    hardExit = (code: number) => process.exit(code),
    stopping = 'finishing in-flight work, then writing a partial report',
  }: { hardExit?: (code: number) => void; stopping?: string } = {},
): Interrupt {
  const controller = new AbortController();
  let received: string | undefined;
  const handler = (sig: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal: sig }, 'second interrupt: exiting now; unfinished jobs go back to the queue and the same command resumes');
      hardExit(130);
      return;
    }
    received = sig;
    log.warn({ signal: sig }, `interrupted: ${stopping} (interrupt again to exit at once)`);
    controller.abort(new Error(`interrupted by ${sig}`));
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: controller.signal,
    reason: () => received,
    dispose() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}

/**
 * Runs a command's body under installInterrupt. A Ctrl-C that lands before the run got going
 * (while logging in or starting Redis) surfaces as an abort error: that is an interruption with
 * nothing queued, so it exits 130 with a plain message instead of a stack trace.
 */
export async function runInterruptible(log: Logger, stopping: string, body: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const interrupt = installInterrupt(log, { stopping });
  try {
    return await body(interrupt.signal);
  } catch (err) {
    if (interrupt.reason()) {
      log.warn('interrupted before the run got going; nothing was queued');
      return ExitCode.Interrupted;
    }
    throw err;
  } finally {
    interrupt.dispose();
  }
}
