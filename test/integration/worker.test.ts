import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { IDSYNC_BIN, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, runJob, sandboxRunArgs, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { sandboxEnv, withSandbox } from '../helpers/sandbox.ts';

describe('idsync worker and --workers 0', () => {
  it('an import that only enqueues is finished by a separate worker process', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 20);
    const env = {
      PATH: process.env.PATH ?? '',
      REDIS_URL: inject('redisUrl'),
      ...sandboxEnv(s),
      IDSYNC_STATE_DIR: path.join(dir, 'worker-state'),
      IDSYNC_REDIS_PREFIX: keyPrefixFor(dir),
      IDSYNC_LOG_FORMAT: 'json',
    };
    // The worker serves every running run of the API under the same key prefix.
    const worker = spawn(process.execPath, [IDSYNC_BIN, 'worker', '--concurrency', '4'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    worker.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => worker.on('exit', (code) => resolve(code)));
    try {
      const r = await runJob({ command: 'import', manifest, ...sandboxRunArgs(s, dir), flags: { workers: 0 } });
      expect(r.exitCode).toBe(0);
      expect(r.summary.counts.succeeded).toBe(20);
      expect(s.documents()).toHaveLength(20);
      expect(stderr).toContain('worker started');
    } finally {
      worker.kill('SIGTERM');
    }
    expect(await exited).toBe(130);
    expect(stderr).toContain('worker stopped');
  }, 60_000);

  it('exits 2 with the fix when Redis cannot be reached', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 1);
    const r = await runCli(['import', manifest], {
      env: { REDIS_URL: 'redis://127.0.0.1:1', IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: path.join(dir, 'st') },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:1.*Fix: check that Redis runs at that address/);
  });

  it('exits 2 when the credentials are refused', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 1);
    const r = await runCli(['import', manifest], { env: { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: 'nope', IDSYNC_STATE_DIR: path.join(dir, 'st') } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refused|credentials|401/i);
    expect(r.stderr).not.toContain('nope');
  });

});

describe('Ctrl-C before a command got going', () => {
  it('exits 130 without a stack trace (here: during a slow login)', async () => {
    const s = await withSandbox({ faults: { latencyMs: 5000 } });
    const dir = tempDir();
    const child = spawn(process.execPath, [IDSYNC_BIN, 'worker'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: path.join(dir, 'st'), IDSYNC_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const end = Date.now() + 10_000;
    while (s.stats().inFlight === 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    // The login request was abandoned, not awaited: the process had gone before the sandbox (5 s
    // of latency) could answer it, so the sandbox saw the connection close, and no 200.
    for (let i = 0; i < 100 && s.stats().inFlight > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(s.stats().status.reset ?? 0).toBeGreaterThanOrEqual(1);
    expect(s.stats().status['200'] ?? 0).toBe(0);
    expect(stderr).toContain('interrupted before the run got going');
    expect(stderr).not.toContain('unexpected error');
  }, 20_000);
});

describe('a run whose jobs vanish', () => {
  it('ends with the missing rows failed (E_LOST) instead of waiting forever', async () => {
    const { Queue } = await import('bullmq');
    const { Redis } = await import('ioredis');
    const { ApiStore } = await import('../../src/store/api-store.ts');
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 3);
    const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
    const store = new ApiStore(redis, { apiUrl: s.url, root: keyPrefixFor(dir) });
    const running = runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'st'), reportDir: path.join(dir, 'rep'), flags: { workers: 0 }, idleCheckMs: 300 });
    // Once queued, the run's own jobs disappear (someone cleaned the queue by hand).
    let runs = await store.listRuns();
    for (let i = 0; i < 100 && runs.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      runs = await store.listRuns();
    }
    const queue = new Queue(runs[0]!.runId, { connection: redis, prefix: store.queuePrefix });
    for (let i = 0; i < 100 && (await queue.getJobCountByTypes('waiting')) < 3; i++) await new Promise((r) => setTimeout(r, 50));
    for (const job of await queue.getJobs(['waiting'])) await job.remove();
    const r = await running;
    expect(r.exitCode).toBe(1);
    expect(r.summary.counts.failed).toBe(3);
    const report = readFileSync(path.join(dir, 'rep', 'report.csv'), 'utf8');
    expect(report).toContain('its job vanished from the queue');
    await queue.obliterate({ force: true });
    await queue.close();
    await redis.quit();
  }, 30_000);
});
