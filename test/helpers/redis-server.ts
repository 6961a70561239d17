import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from '../../src/store/redis/free-port.ts';
import { ensureRedisServer } from '../../src/store/redis/redis-binary.ts';

export interface TestRedis {
  url: string;
  port: number;
  password: string;
  dir: string;
  process: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * A redis-server of its own on a free port, configured from a file (no password in its argv),
 * for the suite and for tests that need their own (cluster nodes, a replica, a restart).
 */
export async function startTestRedis(dir: string, options: { port?: number; password?: string; conf?: string[]; binary?: string } = {}): Promise<TestRedis> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const password = options.password ?? randomBytes(12).toString('hex');
  const binary = options.binary ?? ensureRedisServer({ allowInstall: true, say: (line) => console.log(`[test redis] ${line}`) });
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await freePort());
    const conf = path.join(dir, `redis-${port}.conf`);
    writeFileSync(
      conf,
      [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `requirepass ${password}`, `masterauth ${password}`, 'save ""', 'appendonly no', 'maxmemory-policy noeviction', `logfile ${path.join(dir, `redis-${port}.log`)}`, ...(options.conf ?? [])].join('\n'),
      { mode: 0o600 },
    );
    const child = spawn(binary, [conf], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = `redis://:${password}@127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      const up = await probe.connect().then(() => probe.ping(), () => undefined).finally(() => probe.disconnect());
      if (up === 'PONG') {
        return {
          url,
          port,
          password,
          dir,
          process: child,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        };
      }
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    child.kill('SIGKILL');
    if (attempt >= 2 || options.port) throw new Error(`redis-server would not start on port ${port} (see ${dir})`);
  }
}
