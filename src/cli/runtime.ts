import { loadConfig, type Config } from '../config/load.ts';
import { createLogger, type Logger } from '../log.ts';
import { flagsFromOptions } from './options.ts';

export interface Runtime {
  config: Config;
  log: Logger;
}

/** What every command does first: settings validated once, then a logger configured from them. */
export function setupRuntime(command: string, opts: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): Runtime {
  const config = loadConfig({ flags: flagsFromOptions(opts), env });
  const log = createLogger({ level: config.logLevel, format: config.logFormat }).child({ command });
  if (config.insecure) {
    log.warn('TLS certificate verification is OFF (--insecure): anyone on the network path can read and change this traffic. Prefer --ca-file with the server\'s CA certificate.');
  }
  return { config, log };
}
