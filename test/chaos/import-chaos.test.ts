/**
 * The import under chaos (`npm run test:chaos`; not part of `npm test`): mixed API faults,
 * workers killed with SIGKILL, Redis stopped and started again mid-run, and an optional soak
 * (IDSYNC_SOAK_SECONDS). Each scenario asserts zero documents lost, zero stored twice and a
 * complete report; docs/reliability.md records what was injected and seen.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, describe, expect, it, inject } from 'vitest';
import { startSandbox, PERMISSIONS, type FaultSettings, type Sandbox } from '../../src/sandbox/index.ts';
import { freePort } from '../../src/store/redis/free-port.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { record, sandboxAnswers, startCli, verify, waitFor, writeReliabilityDoc, type CliProcess } from './chaos-helpers.ts';

const PASSWORD = 'chaos-pass-1';

const MIXED: FaultSettings = {
  seed: 11,
  failRate: 0.08,
  throttleRate: 0.02,
  retryAfterSeconds: 1,
  resetRate: 0.05,
  lostResponseRate: 0.08,
  revokeEverySeconds: 3,
};

function describeFaults(f: FaultSettings, tokenTtl?: number): string {
  const parts = Object.entries(f)
    .filter(([k]) => k !== 'seed')
    .map(([k, v]) => `${k} ${v}`);
  if (tokenTtl) parts.push(`token TTL ${tokenTtl} s`);
  return parts.join(', ');
}

const sandboxes: Sandbox[] = [];
async function sandbox(faults: FaultSettings, tokenTtlSeconds?: number): Promise<Sandbox> {
  const s = await startSandbox({ admin: true, users: [{ username: 'migrator', password: PASSWORD, permissions: [...PERMISSIONS] }], faults, ...(tokenTtlSeconds ? { tokenTtlSeconds } : {}) });
  sandboxes.push(s);
  return s;
}

afterAll(async () => {
  for (const s of sandboxes) await s.close().catch(() => {});
  writeReliabilityDoc();
});

function cliEnv(s: Sandbox, dir: string, redisUrl: string, name: string): Record<string, string> {
  return {
    IDSYNC_API_URL: s.url,
    IDSYNC_USERNAME: 'migrator',
    IDSYNC_PASSWORD: PASSWORD,
    REDIS_URL: redisUrl,
    IDSYNC_STATE_DIR: path.join(dir, `state-${name}`),
    IDSYNC_REPORT_DIR: path.join(dir, 'report'),
    IDSYNC_ATTEMPTS: '12',
    // A killed worker's jobs come back within seconds, not the default 30.
    IDSYNC_LOCK_DURATION_MS: '3000',
    IDSYNC_STALLED_INTERVAL_MS: '1000',
  };
}

function assertExactlyOnce(v: ReturnType<typeof verify>, items: number): void {
  expect(v.lost, 'documents lost').toBe(0);
  expect(v.duplicates, 'documents stored twice').toBe(0);
  expect(v.reportComplete, 'one report line per manifest row').toBe(true);
  expect(v.succeeded).toBe(items);
}

describe('import under chaos: zero lost, zero stored twice, complete report', () => {
  it('mixed faults: 5xx, 429, resets, lost upload responses, token revocations, 4-second tokens', async () => {
    const items = 400;
    const s = await sandbox(MIXED, 4);
    const dir = tempDir('chaos');
    const manifest = writeImportManifest(dir, items, { size: 4096 });
    const t0 = Date.now();
    const result = await runJob({
      command: 'import',
      manifest,
      apiUrl: s.url,
      username: 'migrator',
      password: PASSWORD,
      stateDir: path.join(dir, 'state'),
      reportDir: path.join(dir, 'report'),
      flags: { concurrency: 16, attempts: 12 },
    });
    const v = verify(s, path.join(dir, 'report'), items);
    record({ scenario: 'mixed faults (in-process import, C = 16)', faults: describeFaults(MIXED, 4), items, ...v, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    expect(result.exitCode, result.lines.join('\n')).toBe(0);
    assertExactlyOnce(v, items);
  });

  it('kill -9 of workers mid-run (import --workers 0 plus `idsync worker` processes), with faults', async () => {
    const items = 300;
    const faults: FaultSettings = { seed: 5, latencyMs: 15, failRate: 0.03, resetRate: 0.02, lostResponseRate: 0.03 };
    const s = await sandbox(faults);
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
    const v = verify(s, path.join(dir, 'report'), items);
    record({ scenario: `kill -9 of ${kills} workers mid-run, replaced (2 workers × C 8 on one Redis)`, faults: describeFaults(faults), items, ...v, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    assertExactlyOnce(v, items);
  });

  it('Redis (AOF) stopped and started again on the same port and dir mid-run', async () => {
    const items = 300;
    const faults: FaultSettings = { seed: 9, latencyMs: 10, failRate: 0.03, lostResponseRate: 0.03 };
    const s = await sandbox(faults);
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
    const v = verify(s, path.join(dir, 'report'), items);
    record({ scenario: 'Redis restart mid-run (SIGTERM, 1.5 s down, same port and AOF dir), import CLI C = 8', faults: describeFaults(faults), items, ...v, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    assertExactlyOnce(v, items);
  });

  const soakSeconds = Number(process.env.IDSYNC_SOAK_SECONDS ?? 0);
  it.skipIf(!(soakSeconds > 0))(`soak: mixed faults for ${soakSeconds} s of back-to-back imports`, { timeout: (soakSeconds + 300) * 1000 }, async () => {
    const s = await sandbox(MIXED, 4);
    const end = Date.now() + soakSeconds * 1000;
    let runs = 0;
    let items = 0;
    const totals = { succeeded: 0, lost: 0, duplicates: 0 };
    let complete = true;
    const t0 = Date.now();
    while (Date.now() < end) {
      const dir = tempDir('soak');
      const manifest = writeImportManifest(dir, 200, { size: 2048 });
      const result = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: PASSWORD, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'report'), flags: { concurrency: 16, attempts: 12 } });
      const v = verify(s, path.join(dir, 'report'), 200);
      runs++;
      items += 200;
      totals.succeeded += v.succeeded;
      totals.lost += v.lost;
      totals.duplicates += v.duplicates;
      complete &&= v.reportComplete && result.exitCode === 0;
    }
    record({ scenario: `soak: ${runs} back-to-back imports of 200`, faults: describeFaults(MIXED, 4), items, ...totals, reportComplete: complete, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
    expect(totals.lost).toBe(0);
    expect(totals.duplicates).toBe(0);
    expect(complete).toBe(true);
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
