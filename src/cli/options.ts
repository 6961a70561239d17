import { Option, type Command } from 'commander';

/** Connection options shared by every command that talks to the API (cli.md, "Connection settings"). */
export function addConnectionOptions(cmd: Command): Command {
  return cmd
    .option('--api-url <url>', 'base URL of the Identities API, with its path prefix [env IDSYNC_API_URL]')
    .option('--username <name>', 'login name [env IDSYNC_USERNAME]; the password comes only from IDSYNC_PASSWORD or IDSYNC_PASSWORD_FILE')
    .option('--ca-file <path>', 'extra CA certificate(s), PEM, for servers with their own certificates [env IDSYNC_CA_FILE]')
    .option('--insecure', 'skip TLS certificate verification (logged as a warning) [env IDSYNC_INSECURE_TLS=1]')
    .addOption(commonRedisOption())
    .addOption(new Option('--state-dir <dir>', 'folder for the ledger and the private Redis data [env IDSYNC_STATE_DIR] (default: .idsync)'))
    .option('--config <path>', 'JSON config file with the same settings; flags beat environment beat file [env IDSYNC_CONFIG]')
    .addOption(logLevelOption())
    .addOption(new Option('--log-format <format>', 'auto (pretty on a terminal), json or pretty [env IDSYNC_LOG_FORMAT]').choices(['auto', 'json', 'pretty']));
}

export function commonRedisOption(): Option {
  return new Option('--redis-url <url>', 'Redis holding the queues [env REDIS_URL] (default: a private redis-server under --state-dir)');
}

export function logLevelOption(): Option {
  return new Option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent [env IDSYNC_LOG_LEVEL] (default: info)');
}

/** Options of the job commands (import, export, watch, archive, worker). */
export function addJobOptions(cmd: Command, { worker = false } = {}): Command {
  cmd
    .option('--concurrency <n>', 'requests in flight per process [env IDSYNC_CONCURRENCY] (default: 8)')
    .option('--rate <n>', 'most requests per second, across all workers together [env IDSYNC_RATE] (default: unlimited)')
    .option('--attempts <n>', 'tries per item before it counts as failed [env IDSYNC_ATTEMPTS] (default: 5)')
    .option('--connect-timeout <ms>', 'TCP and TLS connect timeout [env IDSYNC_CONNECT_TIMEOUT_MS] (default: 10000)')
    .option('--headers-timeout <ms>', 'longest wait for response headers [env IDSYNC_HEADERS_TIMEOUT_MS] (default: 120000)')
    .option('--body-timeout <ms>', 'longest silence inside a response body, not its total time [env IDSYNC_BODY_TIMEOUT_MS] (default: 60000)')
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics, /healthz and /readyz there, e.g. 127.0.0.1:9464 [env IDSYNC_METRICS_LISTEN] (default: off)');
  if (!worker) {
    cmd
      .option('--report-dir <dir>', 'where the report goes [env IDSYNC_REPORT_DIR] (default: idsync-reports/<runId>)')
      .option('--dry-run', 'validate everything and check the login; send nothing else')
      .option('--workers <n>', 'in-process workers; 0 = enqueue and wait for `idsync worker` processes elsewhere (default: 1)')
      .option('--check-existing', 'ask the API whether each document already exists before uploading (for a rerun from another machine)');
  }
  return cmd;
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
