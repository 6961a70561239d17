import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { openRedis } from '../../src/store/redis/connection.ts';
import { RedisUnavailableError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { isAlive, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

async function waitGone(pid: number, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!isAlive(pid)) return true;
    await sleep(50);
  }
  return !isAlive(pid);
}

function startHolder(stateDir: string, mode: 'wait' | 'exit') {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'test/fixtures/hold-private-redis.ts'), stateDir, mode], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<number>((resolve, reject) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += String(d);
      const m = /ready (\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => reject(new Error(`holder exited before ready: ${buf}`)));
  });
  return { child, ready, exited };
}

describe('private redis-server', () => {
  it('starts, keeps data across restarts (AOF) and is gone after a normal exit', async () => {
    const stateDir = tempDir();
    const h = startHolder(stateDir, 'exit');
    const pid = await h.ready;
    expect(await h.exited).toBe(0);
    expect(await waitGone(pid)).toBe(true);
    expect(existsSync(path.join(stateDir, 'redis', 'owner.pid'))).toBe(false);

    const redis = await openRedis({ redisUrl: undefined, stateDir, log: silentLogger() });
    const client = redis.connect();
    expect(await client.get('fixture')).toBe('alive');
    expect(await client.config('GET', 'maxmemory-policy')).toEqual(['maxmemory-policy', 'noeviction']);
    expect(await client.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    await redis.close();
  });

  it('is gone after SIGTERM of idsync, which exits 130', async () => {
    const h = startHolder(tempDir(), 'wait');
    const pid = await h.ready;
    expect(isAlive(pid)).toBe(true);
    h.child.kill('SIGTERM');
    expect(await h.exited).toBe(130);
    expect(await waitGone(pid)).toBe(true);
  });

  it('is gone even when idsync itself is killed with SIGKILL', async () => {
    const h = startHolder(tempDir(), 'wait');
    const pid = await h.ready;
    h.child.kill('SIGKILL');
    await h.exited;
    expect(await waitGone(pid)).toBe(true);
  });

  it('is shared by the user\'s processes that use one state dir, and stops when the last has gone', async () => {
    const stateDir = tempDir();
    const h = startHolder(stateDir, 'wait');
    const pid = await h.ready;
    const second = await openRedis({ redisUrl: undefined, stateDir, log: silentLogger() });
    expect(second.isPrivate).toBe(true);
    const client = second.connect('second');
    expect(await client.get('fixture')).toBe('alive'); // the same Redis, not a second one
    h.child.kill('SIGTERM');
    await h.exited;
    await sleep(1500);
    expect(isAlive(pid)).toBe(true); // still used by the second process
    expect(await client.get('fixture')).toBe('alive');
    await second.close();
    expect(await waitGone(pid)).toBe(true);
  });

  it('puts no secret on any command line and is reachable only through a 0700 folder', async () => {
    const stateDir = tempDir();
    const redis = await openRedis({ redisUrl: undefined, stateDir, log: silentLogger() });
    try {
      const dir = path.join(stateDir, 'redis');
      const conn = JSON.parse(readFileSync(path.join(dir, 'connection.json'), 'utf8')) as { password: string; pid: number; socket?: string };
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(statSync(path.join(dir, 'connection.json')).mode & 0o777).toBe(0o600);
      expect(statSync(path.join(dir, 'redis.conf')).mode & 0o777).toBe(0o600);
      expect(conn.socket).toBe(path.join(dir, 'redis.sock'));
      // No process (redis-server, its watchdog) shows the password in its argv.
      for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
        let cmdline = '';
        try {
          cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        } catch {
          continue;
        }
        expect(cmdline, `pid ${pid}`).not.toContain(conn.password);
      }
      // Nothing listens on TCP: the socket is the only way in.
      const config = (await redis.connect('probe').config('GET', 'port')) as string[];
      expect(config[1]).toBe('0');
    } finally {
      await redis.close();
    }
  });

  it('an unreachable REDIS_URL is a clear RedisUnavailableError', async () => {
    const err = await openRedis({ redisUrl: 'redis://:secretpw@127.0.0.1:1', stateDir: tempDir(), log: silentLogger(), connectTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisUnavailableError);
    expect((err as Error).message).toMatch(/cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1.*Fix: check that Redis runs at that address/);
    expect((err as Error).message).not.toContain('secretpw');
  });

  it('the shared test Redis answers', async () => {
    const { inject } = await import('vitest');
    const client = new Redis(inject('redisUrl'));
    expect(await client.ping()).toBe('PONG');
    await client.quit();
  });
});

describe('a refused login while the private Redis starts', () => {
  it('reports the login, and the private Redis started meanwhile is stopped', async () => {
    const { startSandbox } = await import('../../src/sandbox/index.ts');
    const { loadConfig } = await import('../../src/config/load.ts');
    const { runImportExport } = await import('../../src/commands/import-export/run-import-export.ts');
    const { writeFileSync } = await import('node:fs');
    const sandbox = await startSandbox({ users: [{ username: 'u', password: 'right-password', permissions: ['Add Identity Files'] }] });
    try {
      const dir = tempDir();
      const manifest = path.join(dir, 'm.csv');
      writeFileSync(manifest, 'personId,file,name\n');
      const stateDir = path.join(dir, 'state');
      const config = loadConfig({ env: { IDSYNC_API_URL: sandbox.url, IDSYNC_USERNAME: 'u', IDSYNC_PASSWORD: 'wrong-password', IDSYNC_STATE_DIR: stateDir, IDSYNC_REPORT_DIR: path.join(dir, 'r') }, flags: {} });
      const err = await runImportExport({ command: 'import', manifest, config, log: silentLogger(), signal: new AbortController().signal, out: () => {}, tty: false }).catch((e: unknown) => e);
      expect((err as Error).name).toBe('AuthRefusedError');
      expect(existsSync(path.join(stateDir, 'redis'))).toBe(true); // it was started
      expect(existsSync(path.join(stateDir, 'redis', 'owner.pid'))).toBe(false); // stopped and released
    } finally {
      await sandbox.close();
    }
  }, 30_000);
});
