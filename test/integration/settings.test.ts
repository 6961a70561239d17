import { spawn } from 'node:child_process';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { CONTROL_QUEUE } from '../../src/store/keys.ts';
import { IDSYNC_BIN, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
afterAll(async () => {
  await redis.quit();
});

describe('the stored rate limit', () => {
  it('--rate N stores it, --rate 0 removes it; idsync limits shows it and --clear removes it', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 2);
    const store = new ApiStore(redis, { apiUrl: s.url, root: keyPrefixFor(dir) });
    const job = (rate: number | undefined) => runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep'), flags: rate === undefined ? {} : { rate } });
    const env = { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: keyPrefixFor(dir), IDSYNC_API_URL: s.url };

    expect((await job(50)).exitCode).toBe(0);
    expect(await store.rateLimit()).toBe(50);
    const runId = (await store.listRuns())[0]!.runId;
    const queue = new Queue(runId, { connection: redis, prefix: store.queuePrefix });
    expect(await queue.getGlobalRateLimit()).toEqual({ max: 50, duration: 1000 });
    const shown = await runCli(['limits'], { env });
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`${s.url}: rate limit 50 requests/s across all workers`);
    expect(shown.stdout).toContain(`run ${runId} (done): its queue's limiter allows 50 jobs per 1000 ms`);
    const json = JSON.parse((await runCli(['limits', '--json'], { env })).stdout) as Array<{ apiUrl: string; rate?: number }>;
    expect(json).toEqual([{ apiUrl: s.url, rate: 50, limitedRuns: [{ runId, state: 'done', max: 50, durationMs: 1000 }] }]);

    // A later command without --rate keeps it; --rate 0 removes it.
    expect((await job(undefined)).exitCode).toBe(0);
    expect(await store.rateLimit()).toBe(50);
    expect((await job(0)).exitCode).toBe(0);
    expect(await store.rateLimit()).toBeUndefined();
    expect(await queue.getGlobalRateLimit()).toBeNull();

    expect((await job(7)).exitCode).toBe(0);
    expect(await store.rateLimit()).toBe(7);
    const cleared = await runCli(['limits', '--clear'], { env });
    expect(cleared.code).toBe(0);
    expect(cleared.stdout).toContain(`${s.url}: removed the rate limit of 7 requests/s (also from 1 run queue)`);
    expect(await store.rateLimit()).toBeUndefined();
    expect(await queue.getGlobalRateLimit()).toBeNull();
    expect((await runCli(['limits'], { env })).stdout).toContain('rate limit none stored');
    expect((await runCli(['limits', '--clear'], { env })).stdout).toContain(`${s.url}: no rate limit was stored`);
    await queue.close();

    const noApi = await runCli(['limits', '--clear'], { env: { REDIS_URL: env.REDIS_URL, IDSYNC_REDIS_PREFIX: env.IDSYNC_REDIS_PREFIX } });
    expect(noApi.code).toBe(2);
    expect(noApi.stderr).toContain('--clear needs the API');
  }, 40_000);

  it('--rate takes 0 (remove) up to 100000, nothing below', () => {
    expect(loadConfig({ flags: { rate: '0' } }).rate).toBe(0);
    expect(() => loadConfig({ flags: { rate: '-1' } })).toThrow(/--rate must be at least 0/);
  });
});

describe('cron schedules', () => {
  it('idsync schedules lists them, `schedules remove NAME` removes one, and idsync worker says at start which it runs', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const prefix = keyPrefixFor(dir);
    const store = new ApiStore(redis, { apiUrl: s.url, root: prefix });
    const control = new Queue(CONTROL_QUEUE, { connection: redis, prefix: store.queuePrefix });
    // What `idsync archive --cron` registers (src/commands/archive/run-archive.ts), minus the signature.
    await control.upsertJobScheduler('archive-0123456789abcdef', { pattern: '0 3 * * *', tz: 'Europe/Amsterdam' }, {
      name: 'archive-tick',
      data: { p: { spec: { faces: '/srv/faces.csv', outDir: '/srv/archive', tag: 'vip' } }, m: 'x' } as never,
      opts: { removeOnComplete: true },
    });
    const env = { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: prefix, IDSYNC_API_URL: s.url };
    const listed = await runCli(['schedules'], { env });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/archive-0123456789abcdef {2}"0 3 \* \* \*" \(Europe\/Amsterdam\), next \d{4}-\d\d-\d\dT\d\d:00:00\.000Z: archive --faces \/srv\/faces\.csv --out \/srv\/archive --tag vip/);

    const worker = spawn(process.execPath, [IDSYNC_BIN, 'worker'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', ...env, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: path.join(dir, 'state'), IDSYNC_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    worker.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => worker.on('exit', (code) => resolve(code)));
    const end = Date.now() + 20_000;
    while (!stderr.includes('cron schedule') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    // Its heartbeat names it and what it serves (`idsync status` lists it); it leaves when it stops.
    const beat = await (async () => {
      for (let i = 0; i < 100; i++) {
        const found = (await store.workers(Date.now())).find((x) => x.id.endsWith(`:${worker.pid}`));
        if (found) return found;
        await new Promise((r) => setTimeout(r, 50));
      }
      return undefined;
    })();
    expect(beat).toMatchObject({ command: 'worker', queues: [CONTROL_QUEUE], processed: 0 });
    worker.kill('SIGTERM');
    expect(await exited).toBe(130);
    expect(await store.workers(Date.now())).toEqual([]);
    const line = stderr.split('\n').find((l) => l.includes('cron schedule'))!;
    const entry = JSON.parse(line) as { msg: string; schedules: string[] };
    expect(entry.msg).toContain('this worker also runs 1 cron schedule of this API');
    expect(entry.schedules[0]).toContain('archive-0123456789abcdef');

    const unknown = await runCli(['schedules', 'remove', 'nope'], { env });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no schedule named "nope"');
    expect(unknown.stderr).toContain('there are: archive-0123456789abcdef');
    expect((await runCli(['schedules', 'delete', 'x'], { env })).code).toBe(2);

    const removed = await runCli(['schedules', 'remove', 'archive-0123456789abcdef'], { env });
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('removed schedule archive-0123456789abcdef');
    expect(await control.getJobSchedulers()).toEqual([]);
    // Its next tick, waiting as a delayed job, went with it.
    expect(await control.getJobCountByTypes('delayed', 'waiting')).toBe(0);
    expect((await runCli(['schedules'], { env })).stdout).toContain(`no schedules for ${s.url}`);
    await control.close();
  }, 40_000);
});
