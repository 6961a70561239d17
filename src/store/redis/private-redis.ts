import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis, type RedisOptions } from 'ioredis';
import { ConfigError, RedisUnavailableError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { freePort } from './free-port.ts';
import { processAlive } from '../../process-alive.ts';

/**
 * idsync's own redis-server, for a user without REDIS_URL: started on first use under
 * `<stateDir>/redis/` (a 0700 folder), its data kept there (AOF) so an interrupted run resumes,
 * shared by the user's idsync processes that use the same state dir, and stopped when the last
 * of them has gone.
 *
 * Nothing secret is on a command line (`ps` shows every process's argv to every local user): the
 * password is in redis.conf and connection.json, both 0600 in the 0700 folder. Redis listens on a
 * unix socket in that folder (no other user can even connect), or, when the socket's path would
 * be too long for the system (108 bytes), on 127.0.0.1 behind the password.
 */
export interface PrivateRedis {
  /** How to connect (a socket or 127.0.0.1, with the password): never log it. */
  options: RedisOptions;
  /** For logs and messages. */
  where: string;
  dir: string;
  /** pid of redis-server itself. */
  pid: number;
  /** True when this process started it; false when it joined one already running. */
  started: boolean;
  /** This process no longer uses it; the last user's release stops it (waits up to 15 s for that). */
  release(): Promise<void>;
}

export interface PrivateRedisOptions {
  /** Folder for its config, data, pid, log and socket (e.g. ~/.local/state/idsync/redis). */
  dir: string;
  redisServer: string;
  log?: Logger;
  startTimeoutMs?: number;
}

/** What connection.json holds: enough for another of the user's idsync processes to join. */
interface ConnectionInfo {
  socket?: string;
  port?: number;
  password: string;
  pid: number;
}

/*
 * redis-server runs under a small shell watchdog that stops it (SIGTERM, so it flushes its AOF)
 * once no process listed in holders/ is alive: each idsync process that uses this Redis writes
 * holders/<its pid> and removes it when it ends; a process killed with SIGKILL leaves its file,
 * but its pid is no longer alive. The watchdog has its own process group (detached), so a Ctrl-C
 * aimed at idsync does not also stop Redis while idsync still writes its partial report.
 */
const WATCHDOG = `trap "" INT HUP
holders=$1; shift
"$@" & pid=$!
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  live=0
  for f in "$holders"/*; do
    [ -e "$f" ] || continue
    if kill -0 "\${f##*/}" 2>/dev/null; then live=1; break; fi
  done
  [ "$live" = 1 ] || break
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"`;

/** A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, 104 on macOS). */
const MAX_SOCKET_PATH = 100;

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function readConnection(dir: string): ConnectionInfo | undefined {
  try {
    const info = JSON.parse(readFileSync(path.join(dir, 'connection.json'), 'utf8')) as ConnectionInfo;
    return typeof info.password === 'string' && Number.isInteger(info.pid) ? info : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a file only its owner can read, whole or not at all. */
function writePrivate(file: string, text: string): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, text, { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, file);
}

function connectionOptions(info: ConnectionInfo): RedisOptions {
  return info.socket ? { path: info.socket, password: info.password } : { host: '127.0.0.1', port: info.port!, password: info.password };
}

async function answers(options: RedisOptions, timeoutMs = 1_000): Promise<boolean> {
  const client = new Redis({ ...options, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs });
  client.on('error', () => {});
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** Starting is done by one process at a time; a lock of a process that died is taken over. */
async function takeStartLock(dir: string, timeoutMs: number): Promise<() => void> {
  const lock = path.join(dir, 'starting.lock');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = openSync(lock, 'wx', 0o600);
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lock, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = readPid(lock);
      if (owner === undefined || !processAlive(owner)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline) throw new RedisUnavailableError(`another idsync process (pid ${owner}) has been starting the private Redis in ${dir} for too long; if it hangs, stop it, or use a shared Redis with REDIS_URL`);
      await sleep(50);
    }
  }
}

/** A redis-server of an older idsync (password in its argv, no connection.json) is stopped before ours starts. */
async function stopStaleServer(dir: string, log?: Logger): Promise<void> {
  const pid = readPid(path.join(dir, 'redis.pid'));
  if (pid === undefined || !processAlive(pid)) return;
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    // not Linux, or already gone
  }
  if (cmdline && !cmdline.includes('redis-server')) return;
  log?.warn({ pid }, 'stopping a private redis-server left running by an earlier idsync process');
  process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && processAlive(pid); i++) await sleep(50);
}

/** Joins the user's private Redis in `dir`, or starts it. */
export async function openPrivateRedis(options: PrivateRedisOptions): Promise<PrivateRedis> {
  const dir = path.resolve(options.dir);
  try {
    mkdirSync(path.join(dir, 'holders'), { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch (err) {
    throw new ConfigError(`the state dir ${path.dirname(dir)} cannot hold the private Redis: ${(err as NodeJS.ErrnoException).code ?? String(err)} (${dir}); make it writable or choose another with --state-dir`, '--state-dir');
  }
  const holder = path.join(dir, 'holders', String(process.pid));
  for (let attempt = 0; attempt < 3; attempt++) {
    const joined = await join(dir, holder);
    if (joined) return joined;
    const unlock = await takeStartLock(dir, options.startTimeoutMs ?? 15_000);
    try {
      // Someone may have started it while this process waited for the lock.
      const late = await join(dir, holder);
      if (late) return late;
      return await start(dir, holder, options);
    } catch (err) {
      rmSync(holder, { force: true });
      if (attempt === 2) throw err;
      options.log?.debug({ err }, 'private Redis: start failed; trying again');
    } finally {
      unlock();
    }
  }
  throw new RedisUnavailableError(`the private Redis in ${dir} cannot be started`);
}

/**
 * Joins the user's private Redis in `dir` only if it runs now, never starting one: for commands
 * that only read state (`idsync status`, `runs`, the dashboard). Undefined when none runs.
 */
export async function attachPrivateRedis(dir: string): Promise<PrivateRedis | undefined> {
  const resolved = path.resolve(dir);
  if (!readConnection(resolved)) return undefined;
  return join(resolved, path.join(resolved, 'holders', String(process.pid)));
}

async function join(dir: string, holder: string): Promise<PrivateRedis | undefined> {
  const info = readConnection(dir);
  if (!info || !processAlive(info.pid)) return undefined;
  // Listed first, so the watchdog keeps Redis up from the moment this process counts on it.
  writeFileSync(holder, '', { mode: 0o600 });
  const options = connectionOptions(info);
  if (!(await answers(options))) {
    rmSync(holder, { force: true });
    return undefined;
  }
  return handle(dir, holder, info, false);
}

async function start(dir: string, holder: string, options: PrivateRedisOptions): Promise<PrivateRedis> {
  await stopStaleServer(dir, options.log);
  rmSync(path.join(dir, 'connection.json'), { force: true });
  const password = randomBytes(24).toString('base64url');
  const socket = path.join(dir, 'redis.sock');
  const useSocket = Buffer.byteLength(socket) <= MAX_SOCKET_PATH;
  const port = useSocket ? 0 : await freePort();
  const conf = [
    useSocket ? `port 0\nunixsocket ${socket}\nunixsocketperm 700` : `port ${port}\nbind 127.0.0.1\nprotected-mode yes`,
    `requirepass ${password}`,
    `dir ${dir}`,
    'appendonly yes',
    'appendfsync everysec',
    'save ""',
    'maxmemory-policy noeviction',
    'daemonize no',
    `pidfile ${path.join(dir, 'redis.pid')}`,
    `logfile ${path.join(dir, 'redis.log')}`,
  ].join('\n');
  writePrivate(path.join(dir, 'redis.conf'), `${conf}\n`);
  writeFileSync(holder, '', { mode: 0o600 });
  const child = spawn('sh', ['-c', WATCHDOG, 'idsync-redis-watchdog', path.join(dir, 'holders'), options.redisServer, path.join(dir, 'redis.conf')], { stdio: 'ignore', detached: true });
  child.unref();
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const info: ConnectionInfo = { ...(useSocket ? { socket } : { port }), password, pid: -1 };
  const ready = await waitReady(connectionOptions(info), exited, options.startTimeoutMs ?? 10_000);
  if (ready !== true) {
    if (child.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    throw new RedisUnavailableError(`the private redis-server would not start (${ready}); see ${path.join(dir, 'redis.log')}`);
  }
  info.pid = readPid(path.join(dir, 'redis.pid')) ?? -1;
  writePrivate(path.join(dir, 'connection.json'), `${JSON.stringify(info)}\n`);
  options.log?.debug({ dir, socket: useSocket, redisPid: info.pid }, 'private redis-server started');
  return handle(dir, holder, info, true);
}

function handle(dir: string, holder: string, info: ConnectionInfo, started: boolean): PrivateRedis {
  return {
    options: connectionOptions(info),
    where: `private redis-server (${info.socket ? `socket ${info.socket}` : `127.0.0.1:${info.port}`}, data in ${dir})`,
    dir,
    pid: info.pid,
    started,
    async release() {
      rmSync(holder, { force: true });
      // The last user's release waits for Redis to stop (its AOF flushed), so the next command,
      // or a test, finds it cleanly gone.
      const others = readHolders(dir).filter((pid) => pid !== process.pid && processAlive(pid));
      if (others.length > 0 || info.pid <= 0) return;
      for (let i = 0; i < 300 && processAlive(info.pid); i++) await sleep(50);
    },
  };
}

function readHolders(dir: string): number[] {
  try {
    return readdirSync(path.join(dir, 'holders')).map(Number).filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

async function waitReady(options: RedisOptions, exited: Promise<number | null>, timeoutMs: number): Promise<true | string> {
  let gone: number | null | undefined;
  void exited.then((code) => {
    gone = code;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone !== undefined) return `redis-server exited with code ${gone}`;
    if (await answers(options, 500)) return true;
    await sleep(50);
  }
  return `no answer within ${timeoutMs} ms`;
}
