import path from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import { RedisOutOfMemoryError, RedisUnavailableError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { rowCommands } from '../row-scripts.ts';
import { statsCommands } from '../run-stats.ts';
import { attachPrivateRedis, openPrivateRedis, type PrivateRedis } from './private-redis.ts';
import { ensureRedisServer, REDIS_FIX } from './redis-binary.ts';
import { parseRedisTarget, type RedisTarget } from './redis-target.ts';

/** A connection to idsync's Redis: a plain one, or a cluster client (both speak the same commands). */
export type RedisConnection = Redis;

export interface RedisHandle {
  /** Where Redis is, safe to log (no password). */
  where: string;
  isPrivate: boolean;
  /** A Redis Cluster (detected at open): connections are cluster clients. */
  cluster: boolean;
  /**
   * Replicas of the master idsync writes to (a Sentinel deployment, or a master with replicas):
   * claims then wait (WAIT) until one replica has them before anything is sent, so a failover
   * cannot lose a doubt mark (see StoredDocuments).
   */
  replicas: number;
  /**
   * A new connection set up the way BullMQ workers need it (no per-command retry limit), with
   * idsync's scripts defined. autoPipelining: commands issued in the same tick by concurrent jobs
   * go out in one write (never for a connection that blocks, such as a BullMQ worker's).
   */
  connect(name?: string, options?: { autoPipelining?: boolean }): RedisConnection;
  close(): Promise<void>;
}

export interface OpenRedisOptions {
  redisUrl: string | undefined;
  /** CA certificate(s) of a TLS Redis (--redis-ca-file). */
  redisCaFile?: string | undefined;
  stateDir: string;
  log: Logger;
  /** Allow installing redis-server when missing (demo and tests only). */
  allowInstall?: boolean;
  /**
   * Never start a private Redis: use REDIS_URL, or join the private Redis running now for this
   * state dir (commands that only read state: `idsync status`); say so when there is neither.
   */
  attachOnly?: boolean;
  connectTimeoutMs?: number;
}

/** What the Redis said, turned into what to do about it. Never the password; one line. */
export function describeRedisFailure(err: unknown, where: string, isPrivate = false): RedisUnavailableError | RedisOutOfMemoryError {
  const e = err as NodeJS.ErrnoException & { command?: { name?: string } };
  const message = String(e?.message ?? err).split('\n')[0]!;
  const code = e?.code ?? '';
  if (/^OOM /.test(message)) return new RedisOutOfMemoryError(`Redis at ${where} is out of memory and refuses writes (${message}); give it more memory (maxmemory) or let running idsync processes finish, then run the same command again`, { cause: err });
  if (/WRONGPASS|NOAUTH|invalid username-password|invalid password/i.test(message)) {
    return new RedisUnavailableError(`Redis at ${where} refused the credentials (${message.slice(0, 80)}); check the user and password in REDIS_URL`, { cause: err });
  }
  if (/NOPERM/.test(message)) {
    return new RedisUnavailableError(`the Redis user in REDIS_URL lacks a permission idsync needs: ${message}. Grant it (README, "Redis": the ACL idsync needs)`, { cause: err });
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || /altnames|does not match certificate/i.test(message)) {
    return new RedisUnavailableError(`Redis at ${where} presented a TLS certificate for another host name (${message}); connect with the name the certificate was made for`, { cause: err });
  }
  if (/CERT|certificate|self[- ]signed|UNABLE_TO_VERIFY/i.test(`${code} ${message}`)) {
    return new RedisUnavailableError(`the TLS certificate of Redis at ${where} is not trusted (${code || message}); pass --redis-ca-file (IDSYNC_REDIS_CA_FILE) with the CA that signed it`, { cause: err });
  }
  if (/wrong version number|packet length too long|ECONNRESET/i.test(message) && where.startsWith('rediss')) {
    return new RedisUnavailableError(`Redis at ${where} does not speak TLS (${message}); use redis:// instead of rediss://`, { cause: err });
  }
  if (/All sentinels are unreachable/i.test(message)) {
    return new RedisUnavailableError(`none of the sentinels of ${where} answered; check the hosts and ports in REDIS_URL`, { cause: err });
  }
  const reason = code && !message.includes(code) ? `${message} (${code})` : message;
  // A Redis the user named: installing one here would not help.
  const fix = isPrivate ? REDIS_FIX : 'check that Redis runs at that address and that this machine reaches it (host, port, firewall), or leave REDIS_URL unset to use a private Redis under the state dir';
  return new RedisUnavailableError(`cannot reach Redis at ${where}: ${reason}. Fix: ${fix}`, { cause: err });
}

/** Whether a Redis (reached as a plain client) is a node of a Redis Cluster. */
async function isClusterNode(probe: Redis, log: Logger): Promise<boolean> {
  try {
    const info = String(await probe.call('CLUSTER', 'INFO'));
    return /cluster_state:/.test(info);
  } catch (err) {
    const message = String((err as Error).message);
    // A user not allowed CLUSTER INFO is taken to be on a plain Redis; on a cluster, the first
    // command of a foreign slot then fails with MOVED, which says what to grant.
    if (/NOPERM/.test(message)) log.debug('cannot ask CLUSTER INFO (the ACL user lacks it); assuming a plain Redis');
    return false;
  }
}

/** idsync reads run status bits with BITFIELD_RO (Redis 6.2): older servers are refused at once. */
export const MIN_REDIS_VERSION = [6, 2] as const;

async function requireVersion(probe: Redis, where: string): Promise<void> {
  let version: string | undefined;
  try {
    version = /redis_version:([\d.]+)/.exec(await probe.info('server'))?.[1];
  } catch {
    return; // INFO not allowed: the first BITFIELD_RO would say it
  }
  const [major = 0, minor = 0] = (version ?? '').split('.').map(Number);
  if (version && (major < MIN_REDIS_VERSION[0] || (major === MIN_REDIS_VERSION[0] && minor < MIN_REDIS_VERSION[1]))) {
    throw new RedisUnavailableError(`Redis at ${where} is version ${version}; idsync needs ${MIN_REDIS_VERSION.join('.')} or later`);
  }
}

/** Replicas connected to the master (a Sentinel deployment has at least one by design). */
async function replicaCount(probe: Redis, sentinel: boolean): Promise<number> {
  try {
    const n = Number(/connected_slaves:(\d+)/.exec(await probe.info('replication'))?.[1] ?? 0);
    return sentinel ? Math.max(1, n) : n;
  } catch {
    return sentinel ? 1 : 0;
  }
}

/**
 * Gives the command its Redis: the one REDIS_URL names (plain, TLS, a socket, Sentinel, or any
 * node of a Cluster, detected), or the user's private redis-server (started on first use). Checks
 * at once that it answers and accepts the credentials, with a one-line reason when not, and warns
 * about an eviction policy that could silently drop queued jobs.
 */
export async function openRedis(options: OpenRedisOptions): Promise<RedisHandle> {
  const { log } = options;
  let privateRedis: PrivateRedis | undefined;
  let target: RedisTarget;
  if (options.redisUrl) {
    target = parseRedisTarget(options.redisUrl, { ...(options.redisCaFile ? { caFile: options.redisCaFile } : {}) });
  } else if (options.attachOnly) {
    privateRedis = await attachPrivateRedis(path.join(options.stateDir, 'redis'));
    if (!privateRedis) {
      throw new RedisUnavailableError(
        `no Redis to read: set REDIS_URL (or --redis-url) to the Redis the runs use. Without it, runs live in the private Redis of the commands that run them, ` +
          `which can be read only while one of them runs (none runs now with the state dir ${options.stateDir}; pass its --state-dir if it uses another)`,
      );
    }
    target = { kind: 'standalone', tls: false, where: privateRedis.where, options: privateRedis.options };
  } else {
    const redisServer = ensureRedisServer({ log, allowInstall: options.allowInstall });
    privateRedis = await openPrivateRedis({ dir: path.join(options.stateDir, 'redis'), redisServer, log });
    target = { kind: 'standalone', tls: false, where: privateRedis.where, options: privateRedis.options };
  }
  const where = target.where;
  const probe = new Redis({ ...target.options, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: options.connectTimeoutMs ?? 5_000, ...(target.kind === 'sentinel' ? { sentinelRetryStrategy: () => null } : {}) });
  // The reason a connection fails (a refused password, an untrusted certificate) comes as an
  // 'error' event; the promise itself only says "Connection is closed".
  let reason: unknown;
  probe.on('error', (err) => {
    reason ??= err;
  });
  let cluster = false;
  let replicas = 0;
  try {
    await probe.connect();
    await probe.ping();
    cluster = target.kind === 'standalone' && !privateRedis && (await isClusterNode(probe, log));
    if (!cluster) replicas = await replicaCount(probe, target.kind === 'sentinel');
    await requireVersion(probe, where);
  } catch (err) {
    probe.disconnect();
    await privateRedis?.release();
    throw describeRedisFailure(reason ?? err, where, privateRedis !== undefined);
  }
  if (!privateRedis) {
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
  log.debug({ redis: where, cluster }, 'redis ready');

  const clients = new Set<RedisConnection>();
  let closing = false;
  const seed = { host: target.options.host ?? '127.0.0.1', port: target.options.port ?? 6379 };
  return {
    where,
    isPrivate: privateRedis !== undefined,
    cluster,
    replicas,
    connect(name?: string, connectOptions: { autoPipelining?: boolean } = {}) {
      const redisOptions: RedisOptions = {
        ...target.options,
        maxRetriesPerRequest: null,
        enableReadyCheck: true,
        // After a failover the old master answers READONLY until the client follows the new one.
        reconnectOnError: (err) => (/READONLY/.test(err.message) ? 2 : false),
        ...(name ? { connectionName: `idsync:${name}` } : {}),
      };
      const client = (
        cluster
          ? new Cluster([seed], {
              redisOptions,
              // BullMQ (and the waits of idsync) need commands to wait for a failover, not fail.
              maxRedirections: 32,
              ...(connectOptions.autoPipelining ? { enableAutoPipelining: true } : {}),
              ...(target.tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) } : {}),
            })
          : new Redis({ ...redisOptions, ...(connectOptions.autoPipelining ? { enableAutoPipelining: true } : {}) })
      ) as RedisConnection;
      // idsync's scripts exist on the connection before its first command (see rowCommands).
      rowCommands(client);
      statsCommands(client);
      // ioredis reports every failed reconnect; say it once per outage, and when it is over.
      let down = false;
      client.on('error', (err: Error) => {
        if (!down && !closing) log.warn({ redis: where, connection: name, error: describeRedisFailure(err, where, privateRedis !== undefined).message }, 'lost the connection to Redis; retrying (queued work is kept in Redis and resumes)');
        else log.debug({ error: err.message }, 'redis connection error');
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
      await privateRedis?.release();
    },
  };
}
