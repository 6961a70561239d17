import { z } from 'zod';
import { apiUrlProblem } from './api-url.ts';
import iconv from 'iconv-lite';
import { formatDuration, parseDuration } from './duration.ts';

/**
 * Every setting shared by the commands: where it comes from (flag, environment variable,
 * config-file key) and what makes it valid. Precedence: flag > environment > file > default.
 */
export interface SettingSpec {
  /** Key in the loaded config object and in the JSON config file. */
  key: keyof SettingsInput;
  flag: string;
  env?: string;
  schema: z.ZodType;
  default?: unknown;
  help: string;
}

const BOOL_WORDS: Record<string, boolean> = { '1': true, true: true, yes: true, on: true, '0': false, false: false, no: false, off: false };

const boolFromText = z.preprocess(
  (v) => (typeof v === 'string' ? (BOOL_WORDS[v.trim().toLowerCase()] ?? v) : v),
  z.boolean({ message: 'must be 1/0, true/false, yes/no or on/off' }),
);

function intIn(min: number, max: number) {
  return z.coerce
    .number({ message: 'must be a whole number' })
    .int({ message: 'must be a whole number' })
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` });
}

export const CONCURRENCY_CEILING = 1024;

/** --concurrency: a whole number, or `auto` (any case) for the adaptive limit. */
const concurrencySetting = z.union([z.number(), z.string()], { message: 'must be a whole number or auto' }).transform((v, ctx) => {
  if (typeof v === 'string' && v.trim().toLowerCase() === 'auto') return 'auto' as const;
  const n = typeof v === 'number' ? v : v.trim() === '' ? Number.NaN : Number(v);
  const problem = !Number.isInteger(n)
    ? 'must be a whole number or auto'
    : n < 1
      ? 'must be at least 1 (or auto, to find the API\'s capacity)'
      : n > CONCURRENCY_CEILING
        ? `must be at most ${CONCURRENCY_CEILING}`
        : undefined;
  if (problem === undefined) return n;
  ctx.addIssue({ code: 'custom', message: problem });
  return z.NEVER;
});

const httpUrl = z
  .string()
  .trim()
  .transform((s, ctx) => {
    const problem = apiUrlProblem(s);
    if (problem) {
      ctx.addIssue({ code: 'custom', message: problem });
      return z.NEVER;
    }
    return normaliseApiUrl(s);
  });

/**
 * One spelling per URL: the queue name, the locks and the ledger file are keyed by this string, so
 * `HTTP://Sandbox:80/identities/` and `http://sandbox/identities` must come out the same or their
 * workers would serve different queues. Scheme and host are case-insensitive and the default port
 * is implied (WHATWG URL parsing does both); a trailing slash would double up with the /api/...
 * paths. The path keeps its case: servers may treat it as case-sensitive. Different host names for
 * one server (`sandbox` vs `127.0.0.1`) stay different: only DNS could tell they are the same.
 */
export function normaliseApiUrl(text: string): string {
  const u = new URL(text);
  return `${u.protocol}//${u.host}${u.pathname}`.replace(/\/+$/, '');
}

const redisUrl = z
  .string()
  .trim()
  .refine((s) => /^(redis|rediss|unix|redis\+sentinel|rediss\+sentinel):\/\//i.test(s), {
    message: 'must be a redis://, rediss://, unix:// or redis+sentinel://host:port[,host:port…]/MASTER URL, e.g. redis://127.0.0.1:6379',
  });

/** One character, or `\t` / `tab` for a tab; a quote or a line break cannot separate cells. */
const delimiter = z
  .string()
  .transform((s) => (s === '\\t' || s.trim().toLowerCase() === 'tab' ? '\t' : s))
  .refine((s) => [...s].length === 1, { message: 'must be one character, e.g. ; or , (or tab)' })
  .refine((s) => !['"', '\n', '\r'].includes(s), { message: 'cannot be a quote or a line break' });

const encoding = z
  .string()
  .trim()
  .refine((s) => iconv.encodingExists(s), { message: 'is not an encoding idsync knows; use a name like utf-8, latin1, cp1252 or utf-16le' });

/** A duration (`6h`, `90m`, `30s`, `500ms`; `0` = none) between two bounds, as milliseconds. */
function durationIn(minMs: number, maxMs: number) {
  return z
    .union([z.string(), z.number()])
    .transform((v, ctx) => {
      const ms = typeof v === 'number' ? (v === 0 ? 0 : undefined) : parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration with a unit, e.g. 6h, 90m, 30s or 500ms (0 = none)' });
        return z.NEVER;
      }
      if (ms !== 0 && (ms < minMs || ms > maxMs)) {
        ctx.addIssue({ code: 'custom', message: `must be 0 or between ${formatDuration(minMs)} and ${formatDuration(maxMs)}` });
        return z.NEVER;
      }
      return ms;
    });
}

/**
 * `HOST:PORT`, `[IPv6]:PORT` or `:PORT` (loopback); the same grammar as docker/healthcheck.mjs,
 * which GETs /healthz at this address when IDSYNC_METRICS_LISTEN is set. Port 0: a free one.
 */
const listenAddress = z
  .string()
  .trim()
  .transform((s, ctx) => {
    const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(s);
    const port = Number(m?.[3]);
    if (!m || port > 65_535) {
      ctx.addIssue({ code: 'custom', message: 'must be HOST:PORT, e.g. 127.0.0.1:9464, [::1]:9464 or :9464 (loopback)' });
      return z.NEVER;
    }
    return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
  });

/** Folders, `A,B` (flag, environment) or a JSON array (config file); checked and made real paths by loadConfig. */
const folderList = z
  .union([z.string(), z.array(z.string())], { message: 'must be folders separated by commas, e.g. /srv/scans,/srv/more' })
  .transform((v) => (typeof v === 'string' ? v.split(',') : v).map((p) => p.trim()).filter((p) => p !== ''))
  .refine((list) => list.length > 0, { message: 'must name at least one folder' });

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const SETTINGS: readonly SettingSpec[] = [
  { key: 'apiUrl', flag: '--api-url', env: 'IDSYNC_API_URL', schema: httpUrl, help: 'base URL of the Identities API, with its path prefix' },
  { key: 'username', flag: '--username', env: 'IDSYNC_USERNAME', schema: z.string().trim().min(1, { message: 'must not be empty' }), help: 'login name' },
  { key: 'passwordFile', flag: '(IDSYNC_PASSWORD_FILE)', env: 'IDSYNC_PASSWORD_FILE', schema: z.string().min(1), help: 'file holding the password' },
  { key: 'caFile', flag: '--ca-file', env: 'IDSYNC_CA_FILE', schema: z.string().min(1), help: 'extra CA certificate(s), PEM' },
  { key: 'insecure', flag: '--insecure', env: 'IDSYNC_INSECURE_TLS', schema: boolFromText, default: false, help: 'skip TLS verification' },
  { key: 'redisUrl', flag: '--redis-url', env: 'REDIS_URL', schema: redisUrl, help: 'Redis holding the queues' },
  { key: 'redisCaFile', flag: '--redis-ca-file', env: 'IDSYNC_REDIS_CA_FILE', schema: z.string().min(1), help: 'CA certificate(s), PEM, of a TLS Redis (rediss://)' },
  { key: 'redisPrefix', flag: '--redis-prefix', env: 'IDSYNC_REDIS_PREFIX', schema: z.string().trim().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'must be 1-64 letters, digits, dots, dashes or underscores' }), default: 'idsync', help: 'root of every Redis key idsync writes (several deployments can share one Redis)' },
  { key: 'stateDir', flag: '--state-dir', env: 'IDSYNC_STATE_DIR', schema: z.string().min(1), help: "folder for the ledger and the private Redis data (default: $XDG_STATE_HOME/idsync, else ~/.local/state/idsync)" },
  { key: 'concurrency', flag: '--concurrency', env: 'IDSYNC_CONCURRENCY', schema: concurrencySetting, default: 8, help: 'requests in flight per process, or auto' },
  { key: 'concurrencyMax', flag: '--concurrency-max', env: 'IDSYNC_CONCURRENCY_MAX', schema: intIn(1, CONCURRENCY_CEILING), default: 64, help: 'most requests in flight with --concurrency auto' },
  { key: 'rate', flag: '--rate', env: 'IDSYNC_RATE', schema: intIn(0, 100_000), help: 'most requests per second across all workers; 0 removes a stored limit' },
  { key: 'attempts', flag: '--attempts', env: 'IDSYNC_ATTEMPTS', schema: intIn(1, 100), default: 5, help: 'tries per item' },
  // A watch's files wait out an API outage this long (30 days at most: a run's keys expire then).
  { key: 'retryBudget', flag: '--retry-budget', env: 'IDSYNC_RETRY_BUDGET', schema: durationIn(1000, 30 * 86_400_000), default: '6h', help: 'watch: how long a file is retried after its first failure while the API is down or failing; 0 = count --attempts instead' },
  { key: 'retryMaxDelay', flag: '--retry-max-delay', env: 'IDSYNC_RETRY_MAX_DELAY', schema: durationIn(50, 3_600_000).refine((ms) => ms > 0, { message: 'must be more than 0' }), default: '5m', help: 'watch: the longest wait between two tries under --retry-budget' },
  { key: 'reportDir', flag: '--report-dir', env: 'IDSYNC_REPORT_DIR', schema: z.string().min(1), help: 'where reports go' },
  { key: 'dryRun', flag: '--dry-run', env: 'IDSYNC_DRY_RUN', schema: boolFromText, default: false, help: 'validate, send nothing' },
  { key: 'logLevel', flag: '--log-level', env: 'IDSYNC_LOG_LEVEL', schema: z.enum(LOG_LEVELS, { message: `must be one of ${LOG_LEVELS.join(', ')}` }), default: 'info', help: 'log level' },
  { key: 'logFormat', flag: '--log-format', env: 'IDSYNC_LOG_FORMAT', schema: z.enum(['auto', 'json', 'pretty'], { message: 'must be auto, json or pretty' }), default: 'auto', help: 'log format' },
  { key: 'workers', flag: '--workers', env: 'IDSYNC_WORKERS', schema: z.coerce.number().refine((n) => n === 0 || n === 1, { message: 'must be 0 (only enqueue; `idsync worker` processes do the work) or 1 (this process works too); for more throughput raise --concurrency or start more `idsync worker` processes' }), default: 1, help: 'in-process workers; 0 = enqueue only' },
  { key: 'checkExisting', flag: '--check-existing', env: 'IDSYNC_CHECK_EXISTING', schema: boolFromText, default: false, help: 'ask the API about every row' },
  { key: 'connectTimeoutMs', flag: '--connect-timeout', env: 'IDSYNC_CONNECT_TIMEOUT_MS', schema: intIn(100, 600_000), default: 10_000, help: 'TCP+TLS connect timeout, ms' },
  { key: 'headersTimeoutMs', flag: '--headers-timeout', env: 'IDSYNC_HEADERS_TIMEOUT_MS', schema: intIn(100, 3_600_000), default: 120_000, help: 'wait for response headers, ms' },
  { key: 'bodyTimeoutMs', flag: '--body-timeout', env: 'IDSYNC_BODY_TIMEOUT_MS', schema: intIn(100, 3_600_000), default: 60_000, help: 'longest silence inside a body, ms' },
  { key: 'delimiter', flag: '--delimiter', env: 'IDSYNC_DELIMITER', schema: delimiter, help: 'manifest cell separator (default: detected from the header line)' },
  { key: 'encoding', flag: '--encoding', env: 'IDSYNC_ENCODING', schema: encoding, help: 'manifest encoding (default: UTF-8, strictly)' },
  { key: 'metricsListen', flag: '--metrics-listen', env: 'IDSYNC_METRICS_LISTEN', schema: listenAddress, help: 'serve Prometheus /metrics, /healthz and /readyz at HOST:PORT' },
  { key: 'allowRead', flag: '--allow-read', env: 'IDSYNC_ALLOW_READ', schema: folderList, help: 'the only folders whose files jobs may upload (default: any file this user can read)' },
  { key: 'allowWrite', flag: '--allow-write', env: 'IDSYNC_ALLOW_WRITE', schema: folderList, help: 'the only folders downloads may write into (default: any folder this user can write)' },
  { key: 'lockDurationMs', flag: 'IDSYNC_LOCK_DURATION_MS', env: 'IDSYNC_LOCK_DURATION_MS', schema: intIn(1000, 3_600_000), default: 30_000, help: 'job lock; a crashed worker\'s jobs are taken back after about this long' },
  { key: 'stalledIntervalMs', flag: 'IDSYNC_STALLED_INTERVAL_MS', env: 'IDSYNC_STALLED_INTERVAL_MS', schema: intIn(500, 3_600_000), default: 15_000, help: 'how often workers look for jobs of crashed workers' },
];

/** The raw shape each source may provide. */
export interface SettingsInput {
  apiUrl?: string;
  username?: string;
  passwordFile?: string;
  caFile?: string;
  insecure?: boolean | string;
  redisUrl?: string;
  redisPrefix?: string;
  redisCaFile?: string;
  stateDir?: string;
  concurrency?: number | string;
  concurrencyMax?: number | string;
  rate?: number | string;
  attempts?: number | string;
  retryBudget?: number | string;
  retryMaxDelay?: number | string;
  reportDir?: string;
  dryRun?: boolean | string;
  logLevel?: string;
  logFormat?: string;
  workers?: number | string;
  checkExisting?: boolean | string;
  connectTimeoutMs?: number | string;
  headersTimeoutMs?: number | string;
  bodyTimeoutMs?: number | string;
  delimiter?: string;
  encoding?: string;
  lockDurationMs?: number | string;
  stalledIntervalMs?: number | string;
  metricsListen?: string;
  allowRead?: string | string[];
  allowWrite?: string | string[];
}
