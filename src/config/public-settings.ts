import type { Config } from './load.ts';

/**
 * The settings a run used, for its summary.json: what to know when comparing two runs or
 * answering "why was it slow". A list of what may be shown (never the password or its file, and a
 * Redis URL without its credentials), so a setting added later stays out until it is added here.
 */
export function publicSettings(config: Config): Record<string, unknown> {
  const shown: Record<string, unknown> = {
    apiUrl: config.apiUrl,
    username: config.username,
    caFile: config.caFile,
    insecure: config.insecure,
    redis: config.redisUrl ? withoutCredentials(config.redisUrl) : 'private redis-server',
    redisPrefix: config.redisPrefix,
    stateDir: config.stateDir,
    concurrency: config.concurrency,
    rate: config.rate,
    attempts: config.attempts,
    workers: config.workers,
    checkExisting: config.checkExisting,
    dryRun: config.dryRun,
    delimiter: config.delimiter,
    encoding: config.encoding,
    connectTimeoutMs: config.connectTimeoutMs,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    lockDurationMs: config.lockDurationMs,
    stalledIntervalMs: config.stalledIntervalMs,
    metricsListen: config.metricsListen ? `${config.metricsListen.host}:${config.metricsListen.port}` : undefined,
    allowRead: config.allowRead?.roots,
    allowWrite: config.allowWrite?.roots,
  };
  for (const key of Object.keys(shown)) if (shown[key] === undefined) delete shown[key];
  return shown;
}

function withoutCredentials(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '';
    if (u.username) u.username = '';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}
