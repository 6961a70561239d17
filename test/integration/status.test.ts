import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { runStatus } from '../../src/commands/status/run-status.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { openPrivateRedis } from '../../src/store/redis/private-redis.ts';
import { ensureRedisServer } from '../../src/store/redis/redis-binary.ts';
import { IDSYNC_BIN, isAlive, REPO_ROOT, tempDir, until } from '../helpers/fixtures.ts';
import { keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const redis = new Redis(inject('redisUrl'));
afterAll(async () => {
  await redis.quit();
});

/** An import that is slow on purpose (the sandbox answers after 300 ms) until `finish()` takes the latency away. */
async function slowImport(rows: number) {
  const s = await withSandbox({ faults: { latencyMs: 300 } });
  const dir = tempDir();
  const manifest = writeImportManifest(dir, rows, { extraRows: ['not-a-guid,files/doc-0.bin,Bad row,,,B0'] });
  const prefix = keyPrefixFor(dir);
  const store = new ApiStore(redis, { apiUrl: s.url, root: prefix });
  const running = runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep'), flags: { concurrency: 1 } });
  running.catch(() => undefined);
  const runId = await until('the run', async () => (await store.listRuns())[0]?.runId);
  return { s, dir, prefix, store, runId, running, finish: () => s.setFaults({}) };
}

describe('idsync status and idsync runs', () => {
  it('show a running import from another folder with only REDIS_URL: progress, rate, ETA, error classes with an example, the workers', async () => {
    const imp = await slowImport(24);
    const env = { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: imp.prefix };
    const elsewhere = tempDir('elsewhere');
    try {
      await until('three rows done', async () => ((await imp.store.run(imp.runId).counts()).succeeded >= 3 ? true : undefined));
      const status = await runCli(['status'], { env, cwd: elsewhere });
      expect(status.stderr).toBe('');
      expect(status.code).toBe(0);
      const out = status.stdout;
      expect(out).toContain(`run       ${imp.runId}`);
      expect(out).toContain(`api       ${imp.s.url}`);
      expect(out).toMatch(new RegExp(`state     running \\(owner ${hostname()}:${process.pid}, heartbeat \\d+s ago\\)`));
      expect(out).toMatch(/progress  \d+ \/ 25 rows \(\d+\.\d %\): \d+ succeeded, 0 skipped, 0 failed, 1 rejected/);
      expect(out).toMatch(/rate      \d+\.\d rows\/s over the last \d+s; ETA \d+s/);
      expect(out).toMatch(/queue     \d+ in flight, \d+ waiting/);
      expect(out).toContain('E_ROW_INVALID  1 rejected  e.g. row 25 (file files/doc-0.bin, personId not-a-guid): ');
      expect(out).toContain(`workers   ${hostname()}:${process.pid} (import)`);

      const runs = await runCli(['runs', '--json'], { env, cwd: elsewhere });
      expect(runs.code).toBe(0);
      const listed = JSON.parse(runs.stdout) as Array<Record<string, unknown>>;
      expect(listed).toHaveLength(1);
      expect(listed[0]).toMatchObject({ runId: imp.runId, command: 'import', state: 'running', total: 25, apiUrl: imp.s.url, owner: { host: hostname(), pid: process.pid, alive: true } });
      expect(listed[0]!.input).toBe(path.join(imp.dir, 'import.csv'));

      // The same prefix given as a flag, as the job commands take it.
      const byFlag = await runCli(['runs', '--json', '--redis-prefix', imp.prefix], { env: { REDIS_URL: inject('redisUrl') }, cwd: elsewhere });
      expect((JSON.parse(byFlag.stdout) as Array<{ runId: string }>).map((r) => r.runId)).toEqual([imp.runId]);

      const table = await runCli(['runs'], { env, cwd: elsewhere });
      expect(table.stdout).toMatch(new RegExp(`API ${imp.s.url.replace(/[.]/g, '\\.')}\\nRUN +COMMAND +STATE +ROWS`));
      expect(table.stdout).toMatch(new RegExp(`${imp.runId} +import +running +\\d+/25 `));
    } finally {
      imp.finish();
    }
    const r = await imp.running;
    expect(r.exitCode).toBe(1);
    // Ended: no rate or ETA any more; the prefix of an id is enough; JSON for scripts.
    const done = await runCli(['status', imp.runId.slice(0, 12), '--json'], { env, cwd: elsewhere });
    expect(done.code).toBe(0);
    const view = JSON.parse(done.stdout) as Record<string, unknown>;
    expect(view).toMatchObject({ runId: imp.runId, state: 'done', done: 25, counts: { succeeded: 24, skipped: 0, failed: 0, rejected: 1 }, inFlight: 0, workers: [] });
    expect(view.rate).toBeUndefined();
    expect(view.etaSeconds).toBeUndefined();
  }, 60_000);

  it('count retries and 429 throttles as the processor meets them, and fails for good by class with an example row', async () => {
    const s = await withSandbox({ faults: { seed: 7, failRate: 0.3, throttleRate: 0.2, retryAfterSeconds: 0 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 12);
    const r = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep'), flags: { attempts: 2 } });
    const got = await runCli(['status', '--json'], { env: { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: keyPrefixFor(dir) } });
    expect(got.code).toBe(0);
    const view = JSON.parse(got.stdout) as { retries: number; throttles: number; errors: Array<{ code: string; failed: number; retried: number; example?: { row: number; error: string } }> };
    expect(view.throttles).toBeGreaterThan(0);
    // Every 429 the jobs met, and no more (the login's are the client's own business).
    expect(view.throttles).toBeLessThanOrEqual(s.stats().status['429'] ?? 0);
    expect(view.retries).toBeGreaterThan(0);
    expect(view.errors.reduce((a, c) => a + c.retried, 0)).toBe(view.retries);
    // Rows that failed for good (2 attempts): as many by class as the report says, each class with a row of its own.
    expect(view.errors.reduce((a, c) => a + c.failed, 0)).toBe(r.summary.counts.failed);
    expect(r.summary.counts.failed).toBeGreaterThan(0);
    for (const c of view.errors.filter((e) => e.failed > 0)) expect(c.example!.error).toMatch(/answered 5\d\d/);
  }, 30_000);

  it('--watch draws the run again every 2 s until Ctrl-C, then exits 0', async () => {
    const imp = await slowImport(6);
    try {
      const child = spawn(process.execPath, [IDSYNC_BIN, 'status', '--watch'], {
        cwd: REPO_ROOT,
        env: { PATH: process.env.PATH ?? '', REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: imp.prefix, IDSYNC_LOG_FORMAT: 'json' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += String(d)));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      await until('two frames', async () => (stdout.split(`run       ${imp.runId}`).length > 2 ? true : undefined), 20_000);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(stdout).toContain('Ctrl-C to stop watching');
    } finally {
      imp.finish();
      await imp.running;
    }
  }, 40_000);

  it('--watch redraws in place on a terminal (in-process, no waiting)', async () => {
    const imp = await slowImport(3);
    imp.finish();
    await imp.running;
    const lines: string[] = [];
    let clears = 0;
    const code = await runStatus({
      config: loadConfig({ env: { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: imp.prefix, IDSYNC_API_URL: imp.s.url } }),
      log: silentLogger(),
      signal: new AbortController().signal,
      watch: true,
      frames: 3,
      out: (l) => lines.push(l),
      clear: () => clears++,
      clock: { now: () => Date.now(), sleep: async () => undefined },
    });
    expect(code).toBe(0);
    expect(clears).toBe(3);
    expect(lines.filter((l) => l === `run       ${imp.runId}`)).toHaveLength(3);
    // No run is running: the latest one is shown, and the first frame says so.
    expect(lines[0]).toBe('(no run is running now; this is the latest one)');
  }, 30_000);

  it('without REDIS_URL and no command running, says that status needs one (exit 2)', async () => {
    const dir = tempDir();
    const r = await runCli(['status'], { env: { IDSYNC_STATE_DIR: path.join(dir, 'state') } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/no Redis to read: set REDIS_URL \(or --redis-url\)/);
    expect(r.stderr).not.toContain('unexpected');
  });

  it('attaches to the private Redis of a command running now with the same state dir, and never starts one', async () => {
    const stateDir = path.join(tempDir(), 'state');
    // This test process plays the command that runs: it opened the state dir's private Redis.
    const held = await openPrivateRedis({ dir: path.join(stateDir, 'redis'), redisServer: ensureRedisServer({ allowInstall: true }) });
    const client = new Redis({ ...held.options, maxRetriesPerRequest: null });
    const store = new ApiStore(client, { apiUrl: 'https://api.example/identities', root: 'idsync' });
    await store.register();
    await store.run('import-private').saveMeta({ runId: 'import-private', command: 'import', apiUrl: store.apiUrl, input: '/m.csv', createdAt: 1, state: 'running', dense: true, total: 3 });
    try {
      const r = await runCli(['runs', '--json'], { env: { IDSYNC_STATE_DIR: stateDir } });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect((JSON.parse(r.stdout) as Array<{ runId: string }>).map((x) => x.runId)).toEqual(['import-private']);
    } finally {
      await client.quit();
      await held.release();
    }
    // Gone with its last user: nothing to read, and none is started for reading.
    const gone = await runCli(['runs'], { env: { IDSYNC_STATE_DIR: stateDir } });
    expect(gone.code).toBe(2);
    expect(gone.stderr).toContain('no Redis to read');
    expect(existsSync(path.join(stateDir, 'redis', 'redis.pid')) && isAlive(Number(readFileSync(path.join(stateDir, 'redis', 'redis.pid'), 'utf8')))).toBe(false);
  }, 30_000);

  it('names an unknown run, and lists the runs an ambiguous start names (exit 2)', async () => {
    const imp = await slowImport(1);
    imp.finish();
    await imp.running;
    const env = { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: imp.prefix };
    const unknown = await runCli(['status', 'import-nope'], { env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no run "import-nope" in this Redis');
    expect((await runCli(['status', 'i'], { env })).code).toBe(0); // one run only: its start is enough
    await imp.store.run('import-other').saveMeta({ runId: 'import-other', command: 'import', apiUrl: imp.s.url, input: '/x.csv', createdAt: 1, state: 'stopped', dense: true });
    const ambiguous = await runCli(['status', 'import-'], { env });
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain('"import-" names 2 runs: ');
    expect(ambiguous.stderr).toContain('import-other');
    expect(ambiguous.stderr).toContain(imp.runId);
  }, 30_000);
});
