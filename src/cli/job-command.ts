import { runImportExport } from '../commands/import-export/run-import-export.ts';
import type { ManifestCommand } from '../commands/import-export/manifest-plan.ts';
import { runInterruptible } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

/** What `idsync import` and `idsync export` share: settings, interrupt handling, the run. */
export async function runJobCli(command: ManifestCommand, manifest: string, opts: Record<string, unknown>, outDir?: string): Promise<number> {
  const { config, log } = setupRuntime(command, opts);
  return runInterruptible(log, 'finishing in-flight work, then writing a partial report', async (signal) => {
    const { exitCode } = await runImportExport({ command, manifest, ...(outDir ? { outDir } : {}), config, log, signal });
    return exitCode;
  });
}
