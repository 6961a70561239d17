import type { RedisOptions } from 'ioredis';
import { readCaPem } from '../../config/ca-file.ts';
import { ConfigError } from '../../errors.ts';

/**
 * Where idsync's Redis is, as REDIS_URL says it (README, "Configuration"):
 *
 *   redis://[user:password@]host[:port][/db]      plain
 *   rediss://[user:password@]host[:port][/db]     TLS (--redis-ca-file for a private CA)
 *   unix:///path/to/redis.sock[?password=…]       a local socket
 *   redis+sentinel://[user:password@]host:port[,host:port…]/MASTER[?sentinelPassword=…&tls=1]
 *
 * Any node of a Redis Cluster works as a plain or TLS URL: cluster mode is detected on connect.
 */
export interface RedisTarget {
  kind: 'standalone' | 'sentinel';
  /** ioredis options for one connection (host/port or path, or sentinels and the master's name). */
  options: RedisOptions;
  /** What logs and messages may show (never a password). */
  where: string;
  tls: boolean;
}

export interface TargetOptions {
  /** PEM file(s) of the CA that signed the Redis server's certificate (--redis-ca-file). */
  caFile?: string;
}

function tlsOptions(caFile: string | undefined): RedisOptions['tls'] {
  return caFile ? { ca: readCaPem(caFile, '--redis-ca-file') } : {};
}

function hostPort(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? /^([^:]+)(?::(\d+))?$/.exec(text);
  if (!m) throw new ConfigError(`REDIS_URL: "${text}" is not host:port`, 'REDIS_URL');
  return { host: m[1]!, port: m[2] ? Number(m[2]) : defaultPort };
}

/** Parses REDIS_URL (or --redis-url). Throws a ConfigError that never repeats the password. */
export function parseRedisTarget(url: string, options: TargetOptions = {}): RedisTarget {
  const scheme = /^([a-z+]+):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme === 'redis+sentinel' || scheme === 'rediss+sentinel') {
    // Not a WHATWG URL (several hosts): user:password@h1:p1,h2:p2/MASTER?query
    const rest = url.slice(scheme.length + 3);
    const at = rest.lastIndexOf('@', rest.indexOf('/') === -1 ? rest.length : rest.indexOf('/'));
    const auth = at >= 0 ? rest.slice(0, at) : '';
    const afterAuth = at >= 0 ? rest.slice(at + 1) : rest;
    const slash = afterAuth.indexOf('/');
    if (slash < 0) throw new ConfigError('REDIS_URL: a redis+sentinel:// URL names its master after the hosts: redis+sentinel://host:26379[,host:26379…]/MASTER', 'REDIS_URL');
    const hosts = afterAuth.slice(0, slash);
    const [pathPart, query = ''] = afterAuth.slice(slash + 1).split('?', 2) as [string, string?];
    const name = decodeURIComponent(pathPart.split('/')[0] ?? '');
    if (!name) throw new ConfigError('REDIS_URL: a redis+sentinel:// URL must name the master: redis+sentinel://host:26379/mymaster', 'REDIS_URL');
    const sentinels = hosts.split(',').filter(Boolean).map((h) => hostPort(h, 26379));
    if (sentinels.length === 0) throw new ConfigError('REDIS_URL: a redis+sentinel:// URL needs at least one sentinel host:port', 'REDIS_URL');
    const params = new URLSearchParams(query);
    const [user, password] = auth ? (auth.includes(':') ? [decodeURIComponent(auth.slice(0, auth.indexOf(':'))), decodeURIComponent(auth.slice(auth.indexOf(':') + 1))] : ['', decodeURIComponent(auth)]) : ['', ''];
    const tls = scheme === 'rediss+sentinel' || params.get('tls') === '1' || params.get('tls') === 'true';
    const sentinelPassword = params.get('sentinelPassword') ?? undefined;
    return {
      kind: 'sentinel',
      tls,
      where: `redis+sentinel://${sentinels.map((s) => `${s.host}:${s.port}`).join(',')}/${name}`,
      options: {
        sentinels,
        name,
        ...(user ? { username: user } : {}),
        ...(password ? { password } : {}),
        ...(sentinelPassword ? { sentinelPassword } : {}),
        ...(tls ? { tls: tlsOptions(options.caFile), enableTLSForSentinelMode: true, sentinelTLS: tlsOptions(options.caFile) } : {}),
      },
    };
  }
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError('REDIS_URL is not a URL (expected e.g. redis://127.0.0.1:6379, rediss://…, unix:///path/redis.sock or redis+sentinel://h:26379/mymaster)', 'REDIS_URL');
  }
  const password = u.password ? decodeURIComponent(u.password) : (u.searchParams.get('password') ?? undefined);
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const auth = { ...(username ? { username } : {}), ...(password ? { password } : {}) };
  if (u.protocol === 'unix:') {
    return { kind: 'standalone', tls: false, where: `unix://${u.pathname}`, options: { path: decodeURIComponent(u.pathname), ...auth } };
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`REDIS_URL must be redis://, rediss://, unix:// or redis+sentinel:// (got ${u.protocol}//)`, 'REDIS_URL');
  }
  const tls = u.protocol === 'rediss:';
  const db = u.pathname && u.pathname !== '/' ? Number(u.pathname.slice(1)) : undefined;
  if (db !== undefined && (!Number.isInteger(db) || db < 0)) throw new ConfigError(`REDIS_URL: "${u.pathname.slice(1)}" is not a database number`, 'REDIS_URL');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port ? Number(u.port) : 6379;
  const shown = new URL(url);
  if (shown.password) shown.password = '***';
  shown.searchParams.delete('password');
  return {
    kind: 'standalone',
    tls,
    where: shown.toString(),
    options: { host, port, ...auth, ...(db ? { db } : {}), ...(tls ? { tls: tlsOptions(options.caFile) } : {}) },
  };
}
