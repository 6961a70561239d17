import path from 'node:path';
import type { Command } from 'commander';
import { defaultStateDir } from '../config/load.ts';
import { packageRoot } from '../package-root.ts';
import { runDemo } from '../commands/demo.ts';
import { installInterrupt } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { config, log } = setupRuntime('demo', { logLevel: 'warn', ...opts, stateDir: opts.stateDir ?? path.join(defaultStateDir(), 'demo') });
  const interrupt = installInterrupt(log);
  try {
    return await runDemo({
      root: packageRoot(),
      stateDir: config.stateDir,
      ...(config.redisUrl ? { redisUrl: config.redisUrl } : {}),
      log,
      signal: interrupt.signal,
    });
  } finally {
    interrupt.dispose();
  }
}
