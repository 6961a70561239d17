import { hostname } from 'node:os';
import { pino, type Logger, type DestinationStream, type LevelWithSilent } from 'pino';
import { prettyFactory } from 'pino-pretty';
import { stderrStatus, type StatusLine } from './status-line.ts';
import { scrubSecrets } from './secret-text.ts';
import { readableStack } from './readable-stack.ts';

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
  /** Fields on every line, besides pid and hostname (workers run on several machines). */
  base?: Record<string, unknown>;
  /** The terminal's status line (the progress bar) that lines are printed above; stderr's by default. */
  statusLine?: StatusLine;
}

const LEVEL_VALUES: Record<LevelWithSilent, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

export function createLogger(options: LoggerOptions = {}): Logger {
  const format = options.format ?? 'auto';
  const level = options.level ?? 'info';
  const onTerminal = options.destination === undefined && process.stderr.isTTY === true;
  const usePretty = format === 'pretty' || (format === 'auto' && onTerminal);
  const destination = formatted(options.destination ?? terminalOrStderr(onTerminal, options.statusLine ?? stderrStatus), usePretty ? onTerminal : undefined);
  const now = options.now;
  // Stack traces are for debugging: below debug an error is its class, code and message (a
  // retry storm printed thousands of stack lines into bundled chunk files before).
  const withStacks = LEVEL_VALUES[level] <= LEVEL_VALUES.debug;
  return pino(
    {
      level,
      base: { pid: process.pid, hostname: hostname(), ...options.base },
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
      serializers: { err: withStacks ? fullError : briefError },
    },
    destination,
  );
}

/**
 * stderr as such (sync, so nothing is lost at exit), or on a terminal through its status line,
 * so log lines print above the progress bar, never onto it.
 */
function terminalOrStderr(onTerminal: boolean, status: StatusLine): DestinationStream {
  if (!onTerminal) return pino.destination({ dest: 2, sync: true });
  return { write: (line: string) => status.print(line) };
}

/** Human-readable lines, one per event (colours on a terminal); `colorize` undefined: JSON as is. */
function formatted(destination: DestinationStream, colorize: boolean | undefined): DestinationStream {
  if (colorize === undefined) return destination;
  // errorLikeObjectKeys: none, or pino-pretty prints `err` over several lines whatever singleLine says.
  const prettify = prettyFactory({ colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true, errorLikeObjectKeys: [] });
  return { write: (line: string) => destination.write(prettify(line)) };
}

/** An error with its stack (and its causes'), secrets scrubbed: debug and trace. */
function fullError(err: unknown): unknown {
  if (!(err instanceof Error)) return briefError(err);
  const e = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>;
  if (typeof e.message === 'string') e.message = scrubSecrets(e.message);
  if (typeof e.stack === 'string') e.stack = scrubSecrets(readableStack(e.stack));
  return e;
}

/**
 * An error as an operator reads it: its class, message (with its causes') and plain fields such
 * as `code` and `status`, no stack.
 */
export function briefError(err: unknown): unknown {
  if (err === null || typeof err !== 'object' || typeof (err as { message?: unknown }).message !== 'string') return err;
  const e = err as Record<string, unknown> & { message: string; cause?: unknown };
  const out: Record<string, unknown> = {};
  const type = (e.constructor as { name?: unknown } | undefined)?.name;
  if (err instanceof Error && typeof type === 'string') out.type = type;
  let message = e.message;
  const seen = new Set<unknown>([err]);
  for (let cause = e.cause; cause instanceof Error && !seen.has(cause) && seen.size < 5; cause = cause.cause) {
    seen.add(cause);
    message += `: ${cause.message}`;
  }
  out.message = scrubSecrets(message);
  for (const key of Object.keys(e)) {
    if (key === 'stack' || key === 'cause' || key === 'message' || key === 'name' || key in out) continue;
    const value = e[key];
    if (typeof value === 'string') out[key] = scrubSecrets(value);
    else if (typeof value === 'number' || typeof value === 'boolean') out[key] = value;
  }
  return out;
}

/**
 * A child logger with only the bindings its parent does not have already. pino appends bindings,
 * so a key bound twice (the session's runId, then the job's) appeared twice in every line, and
 * Elasticsearch/OpenSearch refuse such documents. The parent's binding wins.
 */
export function childLogger(log: Logger, bindings: Record<string, unknown>): Logger {
  const bound = log.bindings();
  const fresh: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(bindings)) if (!(key in bound)) fresh[key] = value;
  return log.child(fresh);
}

/** A logger that drops everything, for library callers and tests that do not look at logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
