import type { Command } from 'commander';
import { runArchive } from '../commands/archive/run-archive.ts';
import { runInterruptible } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { faces, out, persons, tag, since, cron, tz, ...rest } = opts;
  const { config, log } = setupRuntime('archive', rest);
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  return runInterruptible(log, 'finishing in-flight archive jobs, then writing a partial report', async (signal) => {
    const { exitCode } = await runArchive({
      faces: String(faces),
      outDir: String(out),
      ...(str(persons) ? { persons: str(persons)! } : {}),
      ...(str(tag) ? { tag: str(tag)! } : {}),
      ...(str(since) ? { since: str(since)! } : {}),
      ...(str(cron) ? { cron: str(cron)! } : {}),
      ...(str(tz) ? { tz: str(tz)! } : {}),
      config,
      log,
      signal,
    });
    return exitCode;
  });
}
