import type { Config } from '../../config/load.ts';
import { ConfigError } from '../../errors.ts';
import type { ApiStore } from '../../store/api-store.ts';
import { knownApis } from '../../store/api-store.ts';
import type { Session } from '../../engine/session.ts';

/** The API URL of a command that needs one API (limits, schedules), or a message saying so. */
export function requireApiUrl(config: Config, why: string): string {
  if (!config.apiUrl) throw new ConfigError(`--api-url (or IDSYNC_API_URL) is needed: ${why}`, '--api-url');
  return config.apiUrl;
}

/**
 * The APIs whose runs a reading command looks at: the configured one, or, with `all` or when no
 * API URL is configured, every API this Redis has served (`idsync status` from a terminal that
 * has only REDIS_URL finds the run all the same).
 */
export async function storesToRead(session: Session, all: boolean): Promise<ApiStore[]> {
  if (session.config.apiUrl && !all) return [session.storeFor(session.config.apiUrl)];
  const apis = await knownApis(session.connection, session.config.redisPrefix);
  return Object.values(apis)
    .sort()
    .map((url) => session.storeFor(url));
}
