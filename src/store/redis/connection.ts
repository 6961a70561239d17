import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { RedisUnavailableError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { rowCommands } from '../row-scripts.ts';
import { statsCommands } from '../run-stats.ts';
import { ensureRedisServer, REDIS_FIX } from './redis-binary.ts';
import { readPrivateRedisDetails, startPrivateRedis, type PrivateRedis } from './private-redis.ts';

export interface RedisHandle {
  /** Connection URL (may carry a password: never log it). */
  url: string;
  /** Host:port or socket, safe to log. */
  where: string;
  isPrivate: boolean;
  /**
   * A new connection set up the way BullMQ workers need it (no per-command retry limit).
   * autoPipelining: commands issued in the same tick by concurrent jobs go out in one write
   * (never for a connection that blocks, such as a BullMQ worker's).
   */
  connect(name?: string, options?: { autoPipelining?: boolean }): Redis;
  close(): Promise<void>;
}

export interface OpenRedisOptions {
  redisUrl: string | undefined;
  stateDir: string;
  log: Logger;
  /** Allow installing redis-server when missing (demo and tests only). */
  allowInstall?: boolean;
  /**
   * Never start a private Redis: use REDIS_URL, or attach to the private Redis of a command
   * running now with this state dir (commands that only read state: `idsync status`).
   */
  attachOnly?: boolean;
  connectTimeoutMs?: number;
}

export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    if (u.username && u.password) u.username = u.username;
    return u.toString();
  } catch {
    return '(unparsable Redis URL)';
  }
}

function baseOptions(): RedisOptions {
  return { maxRetriesPerRequest: null, enableReadyCheck: true };
}

/**
 * Gives the run its Redis: the one REDIS_URL names, or a private redis-server that idsync
 * starts under `<stateDir>/redis` and stops again on close. Checks reachability at once, and
 * warns about an eviction policy that could silently drop queued jobs.
 */
export async function openRedis(options: OpenRedisOptions): Promise<RedisHandle> {
  const { log } = options;
  let privateRedis: PrivateRedis | undefined;
  let url = options.redisUrl;
  let attached: string | undefined;
  if (!url && options.attachOnly) {
    const dir = path.join(options.stateDir, 'redis');
    const details = readPrivateRedisDetails(dir);
    if (!details) {
      throw new RedisUnavailableError(
        `no Redis to read: set REDIS_URL (or --redis-url) to the Redis the runs use. Without it, runs live in the private Redis of the command that runs them, ` +
          `which can be read only while that command runs (none runs now with the state dir ${options.stateDir}; pass its --state-dir if it uses another)`,
      );
    }
    url = details.url;
    attached = `the private redis-server of idsync pid ${details.ownerPid} (${dir})`;
  }
  if (!url) {
    const redisServer = ensureRedisServer({ log, allowInstall: options.allowInstall });
    privateRedis = await startPrivateRedis({ dir: path.join(options.stateDir, 'redis'), redisServer, log });
    url = privateRedis.url;
  }
  const where = attached ?? redactRedisUrl(url);
  const probe = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: options.connectTimeoutMs ?? 5_000,
  });
  probe.on('error', () => {});
  try {
    await probe.connect();
    await probe.ping();
  } catch (err) {
    probe.disconnect();
    await privateRedis?.stop();
    throw new RedisUnavailableError(`cannot reach Redis at ${where}: ${(err as Error).message}. Fix: ${REDIS_FIX}`, { cause: err });
  }
  if (!privateRedis && !attached) {
    try {
      const reply = (await probe.call('CONFIG', 'GET', 'maxmemory-policy')) as string[];
      const policy = reply[1];
      if (policy && policy !== 'noeviction') {
        log.warn({ policy }, `Redis maxmemory-policy is "${policy}": under memory pressure Redis may evict queued jobs. Set it to noeviction (CONFIG SET maxmemory-policy noeviction)`);
      }
    } catch {
      log.debug('cannot read maxmemory-policy (CONFIG disabled on this Redis); make sure it is noeviction');
    }
  }
  probe.disconnect();
  log.debug({ redis: privateRedis ? `private ${privateRedis.host}:${privateRedis.port}` : where }, 'redis ready');

  const clients = new Set<Redis>();
  let closing = false;
  const finalUrl = url;
  return {
    url: finalUrl,
    where: privateRedis ? `private redis-server on 127.0.0.1:${privateRedis.port} (data in ${privateRedis.dir})` : where,
    isPrivate: privateRedis !== undefined,
    connect(name?: string, options: { autoPipelining?: boolean } = {}) {
      const client = new Redis(finalUrl, {
        ...baseOptions(),
        connectionName: name ? `idsync:${name}` : undefined,
        ...(options.autoPipelining ? { enableAutoPipelining: true } : {}),
      });
      // idsync's scripts exist on the connection before its first command (see rowCommands).
      rowCommands(client);
      statsCommands(client);
      // ioredis reports every failed reconnect; say it once per outage, and when it is over.
      let down = false;
      client.on('error', (err) => {
        if (!down && !closing) log.warn({ err, redis: where, connection: name }, 'lost the connection to Redis; retrying (queued work is kept in Redis and resumes)');
        else log.debug({ err }, 'redis connection error');
        down = true;
      });
      client.on('ready', () => {
        if (down) log.info({ redis: where, connection: name }, 'Redis connection is back');
        down = false;
      });
      clients.add(client);
      client.once('end', () => clients.delete(client));
      return client;
    },
    async close() {
      closing = true;
      await Promise.all(
        [...clients].map(async (c) => {
          try {
            await c.quit();
          } catch {
            c.disconnect();
          }
        }),
      );
      await privateRedis?.stop();
    },
  };
}
