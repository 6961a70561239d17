import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, rmSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { RedisUnavailableError } from '../../errors.ts';
import { freePort } from './free-port.ts';
import type { Logger } from '../../log.ts';

export interface PrivateRedis {
  /** Connection URL, with the generated password: never log it. */
  url: string;
  host: string;
  port: number;
  /** pid of redis-server itself. */
  pid: number;
  dir: string;
  stop(): Promise<void>;
}

export interface PrivateRedisOptions {
  /** Folder for AOF data, pid, lock and log (e.g. .idsync/redis). */
  dir: string;
  redisServer: string;
  log?: Logger;
  startTimeoutMs?: number;
}

/*
 * redis-server runs under a tiny shell watchdog whose stdin is a pipe from this process.
 * When idsync ends in any way (normal exit, SIGTERM, even SIGKILL) the pipe closes, `read`
 * returns, and the watchdog stops redis-server with SIGTERM so that it flushes its AOF.
 * The watchdog gets its own process group (detached), so a Ctrl-C aimed at idsync does not
 * also stop Redis while idsync is still writing its partial report.
 */
const WATCHDOG = 'trap "" INT; "$@" & pid=$!; read _line; kill -TERM "$pid" 2>/dev/null; wait "$pid"';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** One idsync process owns a state dir's private Redis at a time; the lock says which. */
function takeLock(dir: string): string {
  const lock = path.join(dir, 'owner.pid');
  for (let i = 0; i < 2; i++) {
    try {
      const fd = openSync(lock, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return lock;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = readPid(lock);
      if (owner !== undefined && owner !== process.pid && isAlive(owner)) {
        throw new RedisUnavailableError(
          `another idsync process (pid ${owner}) is using the private Redis in ${dir}; wait for it to finish, ` +
            'or run both against one shared Redis with REDIS_URL (e.g. `redis-server --port 6379 --appendonly yes` and REDIS_URL=redis://127.0.0.1:6379)',
        );
      }
      rmSync(lock, { force: true });
    }
  }
  throw new RedisUnavailableError(`cannot take the lock ${lock}`);
}

async function stopStaleServer(dir: string, log?: Logger): Promise<void> {
  const pidFile = path.join(dir, 'redis.pid');
  const pid = readPid(pidFile);
  if (pid === undefined || !isAlive(pid)) return;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    // not Linux, or already gone
  }
  if (cmdline && !cmdline.includes('redis-server')) return;
  log?.warn({ pid }, 'stopping a private redis-server left running by an earlier idsync process');
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(50);
}

/**
 * The file in a private Redis's folder that tells how to reach it while its owner runs (JSON
 * `{ "url": "redis://:<password>@127.0.0.1:<port>" }`, mode 0600: the owner's only). Commands that
 * only read state (`idsync status`) attach to it instead of starting a Redis of their own.
 */
export const PRIVATE_REDIS_DETAILS = 'connection.json';

/** The URL of the private Redis running for `dir` now, if its owner says so and is alive. */
export function readPrivateRedisDetails(dir: string): { url: string; ownerPid: number } | undefined {
  const ownerPid = readPid(path.join(dir, 'owner.pid'));
  if (ownerPid === undefined || !isAlive(ownerPid)) return undefined;
  try {
    const details = JSON.parse(readFileSync(path.join(dir, PRIVATE_REDIS_DETAILS), 'utf8')) as { url?: unknown };
    return typeof details.url === 'string' && details.url.startsWith('redis://') ? { url: details.url, ownerPid } : undefined;
  } catch {
    return undefined;
  }
}

export async function startPrivateRedis(options: PrivateRedisOptions): Promise<PrivateRedis> {
  const dir = path.resolve(options.dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = takeLock(dir);
  try {
    await stopStaleServer(dir, options.log);
    let lastError = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const password = randomBytes(18).toString('base64url');
      const args = [
        options.redisServer,
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--protected-mode', 'yes',
        '--requirepass', password,
        '--dir', dir,
        '--appendonly', 'yes',
        '--appendfsync', 'everysec',
        '--save', '',
        '--maxmemory-policy', 'noeviction',
        '--daemonize', 'no',
        '--pidfile', path.join(dir, 'redis.pid'),
        '--logfile', path.join(dir, 'redis.log'),
      ];
      const child = spawn('sh', ['-c', WATCHDOG, 'idsync-redis-watchdog', ...args], {
        stdio: ['pipe', 'ignore', 'ignore'],
        detached: true,
      });
      child.unref();
      // The pipe must not keep idsync's event loop alive, yet must stay open while idsync runs.
      (child.stdin as unknown as { unref?: () => void })?.unref?.();
      child.stdin?.on('error', () => {});
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const url = `redis://:${password}@127.0.0.1:${port}`;
      const ready = await waitReady(url, exited, options.startTimeoutMs ?? 10_000);
      if (ready === true) {
        const pid = readPid(path.join(dir, 'redis.pid')) ?? -1;
        options.log?.debug({ port, dir, redisPid: pid }, 'private redis-server started');
        return {
          url,
          host: '127.0.0.1',
          port,
          pid,
          dir,
          stop: () => stopWatchdog(child, exited, lock),
        };
      }
      lastError = ready;
      await stopWatchdog(child, exited, undefined);
    }
    throw new RedisUnavailableError(`the private redis-server would not start (${lastError}); see ${path.join(dir, 'redis.log')}`);
  } catch (err) {
    rmSync(lock, { force: true });
    throw err;
  }
}

async function waitReady(url: string, exited: Promise<number | null>, timeoutMs: number): Promise<true | string> {
  let gone: number | null | undefined;
  void exited.then((code) => {
    gone = code;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone !== undefined) return `redis-server exited with code ${gone}`;
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 500 });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return true;
    } catch {
      // not up yet
    } finally {
      client.disconnect();
    }
    await sleep(50);
  }
  return `no answer within ${timeoutMs} ms`;
}

async function stopWatchdog(child: ChildProcess, exited: Promise<number | null>, lock: string | undefined): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    child.stdin?.end();
    const cancel = new AbortController();
    const timeout = sleep(15_000, 'timeout' as const, { signal: cancel.signal }).catch(() => 'cancelled' as const);
    const outcome = await Promise.race([exited, timeout]);
    cancel.abort();
    if (outcome === 'timeout' && child.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  if (lock) rmSync(lock, { force: true });
}
