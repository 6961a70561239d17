import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';
import pretty from 'pino-pretty';
import { scrubSecrets } from './secret-text.ts';

export type { Logger } from 'pino';
export { scrubSecrets };

/**
 * Paths redacted in every log line, compiled once by pino. Secrets are also wrapped in
 * `Secret` (src/config/secret.ts), which prints as [redacted]; these paths catch plain
 * strings that slip into a log object under a telling name.
 */
export const REDACT_PATHS = [
  'password',
  'token',
  'authorization',
  'headers.authorization',
  'headers.Authorization',
  'cookie',
  'headers.cookie',
  '*.password',
  '*.token',
  '*.authorization',
  '*.headers.authorization',
  '*.headers.Authorization',
  'req.headers.authorization',
  'req.headers.cookie',
];


export interface LoggerOptions {
  level?: LevelWithSilent;
  /** auto = human-readable on a terminal, JSON lines otherwise. */
  format?: 'auto' | 'json' | 'pretty';
  /** Where lines go; stderr by default (stdout is kept for command output). */
  destination?: DestinationStream;
  /** Injectable clock for tests: returns epoch milliseconds. */
  now?: () => number;
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'auto';
  const usePretty = format === 'pretty' || (format === 'auto' && options.destination === undefined && process.stderr.isTTY === true);
  const destination =
    options.destination ??
    (usePretty
      ? pretty({ destination: 2, sync: true, colorize: process.stderr.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' })
      : pino.destination({ dest: 2, sync: true }));
  const now = options.now;
  return pino(
    {
      level: options.level ?? 'info',
      base: options.base ?? { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: now ? () => `,"time":${now()}` : pino.stdTimeFunctions.epochTime,
      hooks: {
        // Messages are free text (often built from server answers): scrub tokens from them.
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) {
            const arg: unknown = args[i];
            if (typeof arg === 'string') (args as unknown[])[i] = scrubSecrets(arg);
          }
          return method.apply(this, args as Parameters<typeof method>);
        },
      },
      serializers: {
        err: (err: unknown) => {
          const e = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
          if (typeof e.message === 'string') e.message = scrubSecrets(e.message);
          if (typeof e.stack === 'string') e.stack = scrubSecrets(e.stack);
          return e;
        },
      },
    },
    destination,
  );
}

/** A logger that drops everything, for library callers and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
