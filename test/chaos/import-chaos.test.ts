/**
 * The import under chaos (`npm run test:chaos`; not part of `npm test`): mixed API faults,
 * workers killed with SIGKILL, Redis stopped and started again mid-run, and an optional soak
 * (soak.test.ts). Each scenario asserts zero documents lost, zero stored twice and a
 * complete report; docs/reliability.md records what was injected and seen.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, inject } from 'vitest';
import type { FaultSettings } from '../../src/sandbox/index.ts';
import { freePort } from '../../src/store/redis/free-port.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { assertExactlyOnce, CHAOS_PASSWORD, chaosSandbox, cliEnv, describeFaults, MIXED, record, sandboxAnswers, startCli, verify, waitFor, type CliProcess } from './chaos-helpers.ts';

describe('import under chaos: zero lost, zero stored twice, complete report', () => {
  it('mixed faults: 5xx, 429, resets, lost upload responses, token revocations, 4-second tokens', async () => {
    const items = 400;
    const s = await chaosSandbox(MIXED, 4);
    const dir = tempDir('chaos');
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const t0 = Date.now();
    const result = await runJob({
      command: 'import',
      manifest,
      apiUrl: s.url,
      username: 'migrator',
      password: CHAOS_PASSWORD,
      stateDir: path.join(dir, 'state'),
      reportDir: path.join(dir, 'report'),
      flags: { concurrency: 16, attempts: 12 },
    });
    const v = verify(s, path.join(dir, 'report'), items, { manifest });
    record({ scenario: 'mixed faults (in-process import, C = 16)', faults: describeFaults(MIXED, 4), items, ...v, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    expect(result.exitCode, result.lines.join('\n')).toBe(0);
    assertExactlyOnce(v, items);
  });

  it('kill -9 of workers mid-run (import --workers 0 plus `idsync worker` processes), with faults', async () => {
    const items = 300;
    const faults: FaultSettings = { seed: 5, latencyMs: 15, failRate: 0.03, resetRate: 0.02, lostResponseRate: 0.03 };
    const s = await chaosSandbox(faults);
    const dir = tempDir('chaos');
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const redisUrl = inject('redisUrl');
    const t0 = Date.now();
    const workers: CliProcess[] = [];
    const startWorker = async (name: string) => {
      const w = startCli(['worker', '--concurrency', '8'], cliEnv(s, dir, redisUrl, name));
      await w.waitForLog('worker started');
      workers.push(w);
      return w;
    };
    const a = await startWorker('a');
    const b = await startWorker('b');
    const importer = startCli(['import', manifest, '--workers', '0'], cliEnv(s, dir, redisUrl, 'import'));
    let kills = 0;
    try {
      // Kill each worker once, in the middle of its uploads, and put a fresh one in its place.
      await waitFor(() => s.documents().length >= items * 0.25, 120_000, '25 % stored');
      a.child.kill('SIGKILL');
      kills++;
      await startWorker('c');
      await waitFor(() => s.documents().length >= items * 0.6, 120_000, '60 % stored');
      b.child.kill('SIGKILL');
      kills++;
      await startWorker('d');
      const code = await Promise.race([importer.exited, sleep(240_000).then(() => -99)]);
      expect(code, importer.output().stderr.slice(-3000)).toBe(0);
    } finally {
      for (const w of workers) w.child.kill('SIGKILL');
      importer.child.kill('SIGKILL');
    }
    const v = verify(s, path.join(dir, 'report'), items, { manifest });
    record({ scenario: `kill -9 of ${kills} workers mid-run, replaced (2 workers × C 8 on one Redis)`, faults: describeFaults(faults), items, ...v, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    assertExactlyOnce(v, items);
  });

  it('Redis (AOF) stopped and started again on the same port and dir mid-run', async () => {
    const items = 300;
    const faults: FaultSettings = { seed: 9, latencyMs: 10, failRate: 0.03, lostResponseRate: 0.03 };
    const s = await chaosSandbox(faults);
    const dir = tempDir('chaos');
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const redis = await AofRedis.start(path.join(dir, 'redis'));
    const t0 = Date.now();
    const importer = startCli(['import', manifest, '--concurrency', '8'], cliEnv(s, dir, redis.url, 'import'));
    try {
      await waitFor(() => s.documents().length >= items * 0.3, 120_000, '30 % stored');
      await redis.stop();
      await sleep(1500);
      await redis.restart();
      const code = await Promise.race([importer.exited, sleep(240_000).then(() => -99)]);
      expect(code, importer.output().stderr.slice(-3000)).toBe(0);
    } finally {
      importer.child.kill('SIGKILL');
      await redis.stop();
    }
    const v = verify(s, path.join(dir, 'report'), items, { manifest });
    record({ scenario: 'Redis restart mid-run (SIGTERM, 1.5 s down, same port and AOF dir), import CLI C = 8', faults: describeFaults(faults), items, ...v, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    assertExactlyOnce(v, items);
  });
});

/** A redis-server with appendonly (fsync always) that the test can stop and start again in place. */
class AofRedis {
  #child: ChildProcess | undefined;
  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(dir: string): Promise<AofRedis> {
    const r = new AofRedis(dir, await freePort());
    await r.restart();
    return r;
  }

  async restart(): Promise<void> {
    const { mkdirSync } = await import('node:fs');
    mkdirSync(this.dir, { recursive: true });
    this.#child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
    const { Redis } = await import('ioredis');
    for (let i = 0; ; i++) {
      const probe = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
      probe.on('error', () => {});
      try {
        await probe.connect();
        // Ready only once the AOF is loaded.
        if ((await probe.ping()) === 'PONG') {
          probe.disconnect();
          return;
        }
      } catch {
        // not up yet
      }
      probe.disconnect();
      if (i > 200) throw new Error('redis-server did not come up');
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await exited;
  }
}
