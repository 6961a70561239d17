import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { RedisUnavailableError } from '../../errors.ts';
import type { Logger } from '../../log.ts';

export const REDIS_FIX =
  'install redis-server (Debian/Ubuntu: apt-get install -y redis-server; macOS: brew install redis), ' +
  'or point idsync at a Redis with REDIS_URL=redis://host:6379 (or --redis-url), ' +
  'or start one with `docker compose up -d redis` and set REDIS_URL=redis://127.0.0.1:6379';

export function findOnPath(command: string, envPath = process.env.PATH ?? ''): string | undefined {
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  // Debian installs redis-server under /usr/bin, but minimal PATHs (cron, CI) may miss /usr/sbin-style dirs.
  for (const dir of ['/usr/bin', '/usr/local/bin', '/usr/sbin', '/opt/homebrew/bin']) {
    const candidate = path.join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Finds redis-server. With `allowInstall` (the demo and the test suite, which must work on a
 * fresh machine) it installs Debian's package when it can do so without asking: as root, with
 * apt-get present. It always says what it does; everywhere else it explains how to get one.
 */
export function ensureRedisServer(options: { log?: Logger; allowInstall?: boolean; say?: (line: string) => void } = {}): string {
  const found = findOnPath('redis-server');
  if (found) return found;
  const say = options.say ?? ((line: string) => options.log?.warn(line));
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const aptGet = findOnPath('apt-get');
  if (options.allowInstall && process.env.IDSYNC_NO_AUTO_INSTALL !== '1' && isRoot && aptGet) {
    say('redis-server is not installed; installing it now with `apt-get install -y redis-server` (set IDSYNC_NO_AUTO_INSTALL=1 to stop this)');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let result = spawnSync(aptGet, ['install', '-y', '-q', 'redis-server'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (result.status !== 0) {
      say('apt-get install failed; refreshing the package lists with `apt-get update` and trying again');
      spawnSync(aptGet, ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'], env });
      result = spawnSync(aptGet, ['install', '-y', '-q', 'redis-server'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    }
    // Debian's package starts a system-wide service on 6379; idsync does not use it, it starts its own.
    const installed = findOnPath('redis-server');
    if (result.status === 0 && installed) {
      say(`installed ${installed}`);
      return installed;
    }
  }
  throw new RedisUnavailableError(`no Redis available: redis-server was not found on PATH and REDIS_URL is not set. Fix: ${REDIS_FIX}`);
}
