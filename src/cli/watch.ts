import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { runWatch } from '../commands/watch/run-watch.ts';
import { runInterruptible } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

function wholeNumber(opts: Record<string, unknown>, key: string, flag: string, min: number): number | undefined {
  const raw = opts[key];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${flag} must be a whole number of milliseconds, at least ${min} (got ${JSON.stringify(raw)})`);
  return n;
}

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const settleMs = wholeNumber(opts, 'settleMs', '--settle-ms', 0);
  const pollIntervalMs = wholeNumber(opts, 'pollInterval', '--poll-interval', 50);
  if (opts.delete === true && opts.processedDir !== undefined) throw new UsageError('--processed-dir and --delete exclude each other: keep one');
  const { config, log } = setupRuntime('watch', opts);
  return runInterruptible(log, 'no new files are taken; finishing in-flight uploads and their moves', async (signal) => {
    const { exitCode } = await runWatch({
      dir: String(args[0]),
      config,
      log,
      signal,
      ...(settleMs !== undefined ? { settleMs } : {}),
      ...(pollIntervalMs !== undefined ? { pollIntervalMs } : {}),
      poll: opts.poll === true,
      ...(typeof opts.processedDir === 'string' ? { processedDir: opts.processedDir } : {}),
      deleteProcessed: opts.delete === true,
      ...(typeof opts.failedDir === 'string' ? { failedDir: opts.failedDir } : {}),
      retryFailed: opts.retryFailed === true,
    });
    return exitCode;
  });
}
