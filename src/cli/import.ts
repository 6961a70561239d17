import { accessSync, constants } from 'node:fs';
import type { Command } from 'commander';
import { ManifestError, NotImplementedError } from '../errors.ts';
import { setupRuntime } from './runtime.ts';

export async function run(args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  setupRuntime('import', opts);
  const manifest = String(args[0]);
  try {
    accessSync(manifest, constants.R_OK);
  } catch (err) {
    throw new ManifestError(`cannot read manifest ${manifest}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  throw new NotImplementedError('`idsync import`');
}
