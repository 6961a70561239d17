import type { Command } from 'commander';
import { NotImplementedError } from '../errors.ts';
import { setupRuntime } from './runtime.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  setupRuntime('sandbox', opts);
  throw new NotImplementedError('`idsync sandbox`');
}
