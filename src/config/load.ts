import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AllowedFolders } from '../allowed-folders.ts';
import { ConfigError } from '../errors.ts';
import { readCaPem } from './ca-file.ts';
import { Secret } from './secret.ts';
import { SETTINGS, type SettingSpec, type SettingsInput, LOG_LEVELS } from './schema.ts';

export type Source = 'flag' | 'env' | 'file' | 'default';

export interface Config {
  apiUrl: string | undefined;
  username: string | undefined;
  password: Secret | undefined;
  caFile: string | undefined;
  insecure: boolean;
  redisUrl: string | undefined;
  /** CA certificate(s) of a TLS Redis (IDSYNC_REDIS_CA_FILE). */
  redisCaFile: string | undefined;
  /** Root of every Redis key (IDSYNC_REDIS_PREFIX). */
  redisPrefix: string;
  /** Absolute path of the folder holding the ledger and the private Redis data. */
  stateDir: string;
  /**
   * Requests in flight per process: the fixed --concurrency, or with `auto` its bound
   * --concurrency-max. Either way the most there can be (the pool's size, the worker's bound).
   */
  concurrency: number;
  /** `auto`: the API client learns the limit between 1 and `concurrency` (src/pacing/concurrency-limit.ts). */
  concurrencyMode: 'fixed' | 'auto';
  rate: number | undefined;
  attempts: number;
  /** watch: a failing file is retried this long after its first failure (0 = --attempts counts). */
  retryBudgetMs: number;
  /** watch: the longest wait between two tries under the retry budget. */
  retryMaxDelayMs: number;
  reportDir: string | undefined;
  dryRun: boolean;
  logLevel: (typeof LOG_LEVELS)[number];
  logFormat: 'auto' | 'json' | 'pretty';
  workers: number;
  checkExisting: boolean;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  /** The manifests' cell separator; undefined = detected from each header line. */
  delimiter: string | undefined;
  /** The manifests' encoding (an iconv-lite name); undefined = strict UTF-8. */
  encoding: string | undefined;
  lockDurationMs: number;
  stalledIntervalMs: number;
  /** --metrics-listen: where /metrics, /healthz and /readyz are served; none when undefined. */
  metricsListen: { host: string; port: number } | undefined;
  /** --allow-read: the only folders (real paths) whose files jobs may upload; undefined = any. */
  allowRead: AllowedFolders | undefined;
  /** --allow-write: the only folders (real paths) downloads may write into; undefined = any. */
  allowWrite: AllowedFolders | undefined;
  /** Where each setting's value came from, for `--help`-style diagnostics and tests. */
  origins: Partial<Record<keyof SettingsInput, Source>>;
}

export interface LoadOptions {
  /** Values from the command line, already parsed (undefined = not given). */
  flags?: SettingsInput & { config?: string };
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

const PATH_KEYS = new Set<keyof SettingsInput>(['caFile', 'redisCaFile', 'stateDir', 'reportDir', 'passwordFile']);

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, '--config');
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${file} is not valid JSON: ${(err as Error).message}`, '--config');
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new ConfigError(`config file ${file} must hold a JSON object`, '--config');
  }
  const known = new Set<string>(SETTINGS.map((s) => s.key));
  for (const key of Object.keys(data)) {
    if (key === 'password' || key === 'token') {
      throw new ConfigError(
        `config file ${file} holds "${key}": secrets are never read from config files (they end up in backups and tickets); set IDSYNC_PASSWORD or IDSYNC_PASSWORD_FILE instead`,
        key,
      );
    }
    if (!known.has(key)) {
      throw new ConfigError(`config file ${file} has an unknown setting "${key}"; known settings: ${[...known].join(', ')}`, key);
    }
  }
  return data as Record<string, unknown>;
}

function describeOrigin(spec: SettingSpec, source: Source, file?: string): string {
  switch (source) {
    case 'flag':
      return spec.flag;
    case 'env':
      return `${spec.env} (environment)`;
    case 'file':
      return `"${spec.key}" in ${file}`;
    default:
      return `${spec.flag} (default)`;
  }
}

/**
 * Loads and validates every setting once, at start. Flags beat environment beat the JSON
 * config file beat defaults. Any invalid value throws a ConfigError naming the setting the
 * way the user wrote it, and what is wrong.
 */
export function loadConfig(options: LoadOptions = {}): Config {
  const flags = options.flags ?? {};
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();

  const configPath = flags.config ?? (env.IDSYNC_CONFIG || undefined);
  const file = configPath ? path.resolve(cwd, configPath) : undefined;
  const fileData = file ? readConfigFile(file) : {};

  const values: Record<string, unknown> = {};
  const origins: Config['origins'] = {};
  for (const spec of SETTINGS) {
    let raw: unknown;
    let source: Source | undefined;
    let base = cwd;
    const flagValue = (flags as Record<string, unknown>)[spec.key];
    if (flagValue !== undefined) {
      raw = flagValue;
      source = 'flag';
    } else if (spec.env && env[spec.env] !== undefined && env[spec.env] !== '') {
      raw = env[spec.env];
      source = 'env';
    } else if (fileData[spec.key] !== undefined) {
      raw = fileData[spec.key];
      source = 'file';
      base = path.dirname(file!);
    } else if (spec.default !== undefined) {
      raw = spec.default;
      source = 'default';
    }
    if (source === undefined) continue;
    const parsed = spec.schema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const shown = typeof raw === 'string' ? JSON.stringify(maskCredentials(raw)) : String(raw);
      throw new ConfigError(`${describeOrigin(spec, source, file)} ${issue?.message ?? 'is invalid'} (got ${shown})`, spec.flag);
    }
    let value = parsed.data;
    if (PATH_KEYS.has(spec.key) && typeof value === 'string') value = path.resolve(base, value);
    // Checked now (each an existing folder, made its real path): a typo must not confine to nothing or to elsewhere.
    if (spec.key === 'allowRead' || spec.key === 'allowWrite') value = AllowedFolders.resolve(spec.flag as '--allow-read' | '--allow-write', value as string[], base, describeOrigin(spec, source, file));
    values[spec.key] = value;
    origins[spec.key] = source;
  }

  const password = loadPassword(env, values.passwordFile as string | undefined);

  // Checked now, whole (readable, a PEM certificate), so a mistake stops the command before anything starts.
  if (values.caFile !== undefined) readCaPem(values.caFile as string, '--ca-file');
  if (values.redisCaFile !== undefined) readCaPem(values.redisCaFile as string, '--redis-ca-file');

  return {
    apiUrl: values.apiUrl as string | undefined,
    username: values.username as string | undefined,
    password,
    caFile: values.caFile as string | undefined,
    insecure: values.insecure as boolean,
    redisUrl: values.redisUrl as string | undefined,
    redisPrefix: values.redisPrefix as string,
    redisCaFile: values.redisCaFile as string | undefined,
    stateDir: (values.stateDir as string | undefined) ?? defaultStateDir(env),
    concurrency: values.concurrency === 'auto' ? (values.concurrencyMax as number) : (values.concurrency as number),
    concurrencyMode: values.concurrency === 'auto' ? 'auto' : 'fixed',
    rate: values.rate as number | undefined,
    attempts: values.attempts as number,
    retryBudgetMs: values.retryBudget as number,
    retryMaxDelayMs: values.retryMaxDelay as number,
    reportDir: values.reportDir as string | undefined,
    dryRun: values.dryRun as boolean,
    logLevel: values.logLevel as Config['logLevel'],
    logFormat: values.logFormat as Config['logFormat'],
    workers: values.workers as number,
    checkExisting: values.checkExisting as boolean,
    connectTimeoutMs: values.connectTimeoutMs as number,
    headersTimeoutMs: values.headersTimeoutMs as number,
    bodyTimeoutMs: values.bodyTimeoutMs as number,
    delimiter: values.delimiter as string | undefined,
    encoding: values.encoding as string | undefined,
    lockDurationMs: values.lockDurationMs as number,
    stalledIntervalMs: values.stalledIntervalMs as number,
    metricsListen: values.metricsListen as Config['metricsListen'],
    allowRead: values.allowRead as AllowedFolders | undefined,
    allowWrite: values.allowWrite as AllowedFolders | undefined,
    origins,
  };
}

function loadPassword(env: NodeJS.ProcessEnv, passwordFile: string | undefined): Secret | undefined {
  const direct = env.IDSYNC_PASSWORD;
  if (direct !== undefined && direct !== '' && passwordFile !== undefined) {
    throw new ConfigError('both IDSYNC_PASSWORD and IDSYNC_PASSWORD_FILE are set; keep only one', 'IDSYNC_PASSWORD');
  }
  if (direct !== undefined && direct !== '') return new Secret(direct);
  if (passwordFile === undefined) return undefined;
  let text: string;
  try {
    text = readFileSync(passwordFile, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `IDSYNC_PASSWORD_FILE ${passwordFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'}); give the path of a file that holds only the password`,
      'IDSYNC_PASSWORD_FILE',
    );
  }
  // Files written by `echo` or editors end with a newline that is not part of the password.
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new ConfigError(`IDSYNC_PASSWORD_FILE ${passwordFile} is empty`, 'IDSYNC_PASSWORD_FILE');
  return new Secret(value);
}

export interface ApiSettings {
  apiUrl: string;
  username: string;
  password: Secret;
}

/** For commands that talk to the API: says at once which connection settings are missing. */
export function requireApiSettings(config: Config): ApiSettings {
  const missing: string[] = [];
  if (!config.apiUrl) missing.push('--api-url (or IDSYNC_API_URL)');
  if (!config.username) missing.push('--username (or IDSYNC_USERNAME)');
  if (!config.password) missing.push('IDSYNC_PASSWORD or IDSYNC_PASSWORD_FILE');
  if (missing.length > 0) {
    throw new ConfigError(`missing connection settings: ${missing.join(', ')}`, missing[0]);
  }
  return { apiUrl: config.apiUrl!, username: config.username!, password: config.password! };
}

/**
 * The user's state dir (XDG Base Directory): the same whatever folder a command runs from, so a
 * rerun from another folder (or systemd's `/`) finds its ledger and its private Redis.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  if (xdg && path.isAbsolute(xdg)) return path.join(xdg, 'idsync');
  return path.join(env.HOME || os.homedir(), '.local', 'state', 'idsync');
}

/**
 * A refused value is echoed so the user sees what was read; a URL's password is not (a setting
 * refused for carrying credentials, or a mistyped scheme, must not put them on stderr).
 */
function maskCredentials(value: string): string {
  return value.replace(/:[^:@\s/]+@/g, ':***@');
}
