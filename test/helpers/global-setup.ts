import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { startTestRedis } from './redis-server.ts';
import { dockerEndpoint, localImageExists } from './docker-engine.ts';

/** The Redis image docker/build-local-images.sh builds from Debian's redis-server (no registry needed). */
const TEST_REDIS_IMAGE = process.env.IDSYNC_TEST_REDIS_IMAGE ?? 'local/idsync-redis:7';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

/**
 * One Redis for the whole suite (every test uses its own random queue names and prefixes):
 * REDIS_URL when set, else a testcontainers Redis where a Docker engine answers and holds the
 * local Redis image (`npm run test:containers` builds it), else a local redis-server on a free port
 * (installed with apt-get when missing and allowed).
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
  const dir = mkdtempSync(path.join(os.tmpdir(), 'idsync-test-redis-'));
  const redis = await startTestRedis(dir);
  project.provide('redisUrl', redis.url);
  return async () => {
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  };
}

async function tryTestcontainers(): Promise<{ url: string; stop: () => Promise<void> } | undefined> {
  const endpoint = dockerEndpoint();
  if (!endpoint || !(await localImageExists(TEST_REDIS_IMAGE, endpoint))) return undefined;
  // Ryuk, testcontainers' reaper, is an image of its own that cannot be pulled without a registry;
  // the container is removed by the teardown below instead (and on its own when it stops).
  process.env.TESTCONTAINERS_RYUK_DISABLED ??= 'true';
  try {
    const { GenericContainer, Wait } = await import('testcontainers');
    // Docker publishes the port on every address of the host: a password keeps others out.
    const password = randomBytes(16).toString('hex');
    const container = await new GenericContainer(TEST_REDIS_IMAGE)
      .withCommand(['redis-server', '--protected-mode', 'no', '--requirepass', password, '--appendonly', 'yes', '--maxmemory-policy', 'noeviction'])
      .withExposedPorts(6379)
      .withLabels({ 'org.idsync.test': 'suite-redis' })
      .withAutoRemove(true)
      .withWaitStrategy(Wait.forLogMessage('Ready to accept connections'))
      .withStartupTimeout(60_000)
      .start();
    // getHost() may say "localhost", which can resolve to ::1 where Docker publishes IPv4 only.
    const host = container.getHost() === 'localhost' ? '127.0.0.1' : container.getHost();
    console.log(`[test setup] Redis from testcontainers (${TEST_REDIS_IMAGE})`);
    return {
      url: `redis://:${password}@${host}:${container.getMappedPort(6379)}`,
      stop: async () => {
        await container.stop();
      },
    };
  } catch (err) {
    console.log(`[test setup] testcontainers could not start ${TEST_REDIS_IMAGE} (${(err as Error).message.split('\n')[0]}); using a local redis-server`);
    return undefined;
  }
}
