import type { Command } from 'commander';
import { NotImplementedError } from '../errors.ts';
import { setupRuntime } from './runtime.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  setupRuntime('watch', opts);
  throw new NotImplementedError('`idsync watch`');
}
