import { Option, type Command } from 'commander';

/** Connection options shared by every command that talks to the API (README, "Configuration"). */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--api-url <url>', 'base URL of the Identities API, with its path prefix [env IDSYNC_API_URL]')
    .option('--username <name>', 'login name [env IDSYNC_USERNAME]; the password comes only from IDSYNC_PASSWORD or IDSYNC_PASSWORD_FILE')
    .option('--ca-file <path>', 'extra CA certificate(s), PEM, for servers with their own certificates [env IDSYNC_CA_FILE]')
    .option('--insecure', 'skip TLS certificate verification (logged as a warning) [env IDSYNC_INSECURE_TLS=1]')
    .addOption(commonRedisOption())
    .option('--redis-ca-file <path>', 'CA certificate(s), PEM, of a TLS Redis (rediss://) [env IDSYNC_REDIS_CA_FILE]')
    .option('--redis-prefix <prefix>', 'root of every Redis key idsync writes, so several deployments can share one Redis [env IDSYNC_REDIS_PREFIX] (default: idsync)')
    .addOption(new Option('--state-dir <dir>', 'folder for the ledger and the private Redis data [env IDSYNC_STATE_DIR] (default: $XDG_STATE_HOME/idsync, else ~/.local/state/idsync; the same from any folder)'))
    .option('--config <path>', 'JSON config file with the same settings; flags beat environment beat file [env IDSYNC_CONFIG]')
    .addOption(logLevelOption())
    .addOption(new Option('--log-format <format>', 'auto (pretty on a terminal), json or pretty [env IDSYNC_LOG_FORMAT]').choices(['auto', 'json', 'pretty']));
}

/**
 * Options of the commands that only read or tidy state in Redis (runs, status, cancel, limits,
 * schedules, dashboard): no login, so no username or password; the API URL only picks the API.
 */
export function addStateOptions(cmd: Command): Command {
  return cmd
    .option('--api-url <url>', 'the API whose runs to show [env IDSYNC_API_URL] (default: every API this Redis has served)')
    .addOption(new Option('--redis-url <url>', 'Redis holding the queues [env REDIS_URL] (default: the private Redis of an idsync command running now with --state-dir)'))
    .option('--redis-ca-file <path>', 'CA certificate(s), PEM, of a TLS Redis (rediss://) [env IDSYNC_REDIS_CA_FILE]')
    .option('--redis-prefix <prefix>', 'root of the Redis keys to read, as given to the job commands [env IDSYNC_REDIS_PREFIX] (default: idsync)')
    .addOption(new Option('--state-dir <dir>', 'state dir of the command whose private Redis to read when REDIS_URL is unset [env IDSYNC_STATE_DIR]'))
    .option('--config <path>', 'JSON config file with the same settings [env IDSYNC_CONFIG]')
    .addOption(logLevelOption())
    .addOption(new Option('--log-format <format>', 'auto, json or pretty [env IDSYNC_LOG_FORMAT]').choices(['auto', 'json', 'pretty']));
}

export function commonRedisOption(): Option {
  return new Option('--redis-url <url>', 'Redis holding the queues [env REDIS_URL] (default: a private redis-server under --state-dir)');
}

export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent [env IDSYNC_LOG_LEVEL] (default: info)');
}

/**
 * Options of the job commands (import, export, watch, archive, worker, verify). `readOnly`: a
 * command that only reads from the API (verify) has no --dry-run or --check-existing.
 */
export function addJobOptions(cmd: Command, { worker = false, readOnly = false } = {}): Command {
  cmd
    .option('--concurrency <n|auto>', 'requests in flight per process, or auto: found from the API\'s answers, up to --concurrency-max [env IDSYNC_CONCURRENCY] (default: 8)')
    .option('--concurrency-max <n>', 'most requests in flight with --concurrency auto [env IDSYNC_CONCURRENCY_MAX] (default: 64)')
    .option('--rate <n>', 'most requests per second, across all workers together; 0 removes a limit stored by an earlier --rate [env IDSYNC_RATE] (default: unlimited, or the stored limit)')
    .option('--attempts <n>', 'tries per item before it counts as failed [env IDSYNC_ATTEMPTS] (default: 5)')
    .option('--connect-timeout <ms>', 'TCP and TLS connect timeout [env IDSYNC_CONNECT_TIMEOUT_MS] (default: 10000)')
    .option('--headers-timeout <ms>', 'longest wait for response headers [env IDSYNC_HEADERS_TIMEOUT_MS] (default: 120000)')
    .option('--body-timeout <ms>', 'longest silence inside a response body, not its total time [env IDSYNC_BODY_TIMEOUT_MS] (default: 60000)')
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics, /healthz and /readyz there, e.g. 127.0.0.1:9464 [env IDSYNC_METRICS_LISTEN] (default: off)');
  if (!worker) {
    cmd
      .option('--report-dir <dir>', 'where the report goes [env IDSYNC_REPORT_DIR] (default: idsync-reports/<runId>)')
      .option('--workers <n>', 'in-process workers; 0 = enqueue and wait for `idsync worker` processes elsewhere (default: 1)');
  }
  if (!worker && !readOnly) {
    cmd
      .option('--dry-run', 'validate everything and check the login; send nothing else')
      .option('--check-existing', 'ask the API whether each document already exists before uploading (for a rerun from another machine)');
  }
  return cmd;
}

/**
 * The operator's bound on what jobs may touch (import, export, watch, worker): whoever can sign
 * jobs (anyone with the API password) could otherwise make a worker read or write any file its user can.
 */
export function addConfinementOptions(cmd: Command): Command {
  return cmd
    .option('--allow-read <dirs>', 'upload only files inside these folders (comma-separated; links and .. resolved) [env IDSYNC_ALLOW_READ] (default: any file this user can read)')
    .option('--allow-write <dirs>', 'download only into these folders (comma-separated) [env IDSYNC_ALLOW_WRITE] (default: any folder this user can write)');
}

/** How a CSV input is read (import and export manifests, archive's --faces/--persons). */
export function addManifestOptions(cmd: Command): Command {
  return cmd
    .option('--delimiter <char>', 'cell separator of the CSV, one character or tab [env IDSYNC_DELIMITER] (default: "," unless the header line has none but ";" or a tab)')
    .option('--encoding <name>', 'character encoding of the CSV, e.g. latin1, cp1252, utf-16le [env IDSYNC_ENCODING] (default: UTF-8; invalid UTF-8 stops the run)');
}

/** Maps commander's camelCase option names onto config keys. */
export function flagsFromOptions(opts: Record<string, unknown>): Record<string, unknown> {
  const rename: Record<string, string> = {
    connectTimeout: 'connectTimeoutMs',
    headersTimeout: 'headersTimeoutMs',
    bodyTimeout: 'bodyTimeoutMs',
  };
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(opts)) out[rename[key] ?? key] = value;
  return out;
}
