import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { ensureRedisServer } from '../../src/store/redis/redis-binary.ts';
import { startPrivateRedis, type PrivateRedis } from '../../src/store/redis/private-redis.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * One Redis for the whole suite (every test uses its own random queue names and prefixes):
 * REDIS_URL when set, else a testcontainers Redis where a Docker engine answers, else a
 * local redis-server on a free port (installed with apt-get when missing and allowed).
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL);
    return async () => {};
  }
  const fromDocker = await tryTestcontainers();
  if (fromDocker) {
    project.provide('redisUrl', fromDocker.url);
    return fromDocker.stop;
  }
  const redisServer = ensureRedisServer({ allowInstall: true, say: (line) => console.log(`[test setup] ${line}`) });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'idsync-test-redis-'));
  const redis: PrivateRedis = await startPrivateRedis({ dir, redisServer });
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}

async function tryTestcontainers(): Promise<{ url: string; stop: () => Promise<void> } | undefined> {
  const socket = process.env.DOCKER_HOST ?? (existsSync('/var/run/docker.sock') ? 'unix:///var/run/docker.sock' : undefined);
  if (!socket) return undefined;
  try {
    const { GenericContainer, Wait } = await import('testcontainers');
    const container = await new GenericContainer('redis:7-alpine')
      .withCommand(['redis-server', '--appendonly', 'yes', '--maxmemory-policy', 'noeviction'])
      .withExposedPorts(6379)
      .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
      .withStartupTimeout(60_000)
      .start();
    return {
      url: `redis://${container.getHost()}:${container.getMappedPort(6379)}`,
      stop: async () => {
        await container.stop();
      },
    };
  } catch (err) {
    console.log(`[test setup] no Docker engine for testcontainers (${(err as Error).message.split('\n')[0]}); using a local redis-server`);
    return undefined;
  }
}
