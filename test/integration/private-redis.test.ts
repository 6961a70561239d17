import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { openRedis } from '../../src/store/redis/connection.ts';
import { RedisUnavailableError } from '../../src/errors.ts';
import { silentLogger } from '../../src/log.ts';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

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

  it('refuses a second owner of the same state dir while the first runs', async () => {
    const stateDir = tempDir();
    const h = startHolder(stateDir, 'wait');
    await h.ready;
    await expect(openRedis({ redisUrl: undefined, stateDir, log: silentLogger() })).rejects.toThrowError(/another idsync process \(pid \d+\)/);
    h.child.kill('SIGTERM');
    await h.exited;
  });

  it('an unreachable REDIS_URL is a clear RedisUnavailableError', async () => {
    const err = await openRedis({ redisUrl: 'redis://:secretpw@127.0.0.1:1', stateDir: tempDir(), log: silentLogger(), connectTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RedisUnavailableError);
    expect((err as Error).message).toMatch(/cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1.*Fix: install redis-server/);
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
