import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { cancelRun } from '../../src/commands/status/cancel-run.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { tempDir, until } from '../helpers/fixtures.ts';
import { keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';
import { startWatch } from '../helpers/watch-runs.ts';

const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
afterAll(async () => {
  await redis.quit();
});

async function setup(rows: number, faults = {}) {
  const s = await withSandbox({ faults });
  const dir = tempDir();
  const manifest = writeImportManifest(dir, rows);
  const prefix = keyPrefixFor(dir);
  const store = new ApiStore(redis, { apiUrl: s.url, root: prefix });
  const args = { command: 'import' as const, manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep') };
  const env = { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: prefix };
  const queueOf = (runId: string) => new Queue(runId, { connection: redis, prefix: store.queuePrefix });
  return { s, dir, store, args, env, queueOf };
}

const queued = async (q: Queue) => Object.values(await q.getJobCounts('waiting', 'active', 'delayed', 'prioritized')).reduce((a, b) => a + b, 0);

describe('idsync cancel', () => {
  it('removes a stopped run\'s queued jobs, says what it removed, and leaves the rest to a rerun of the same command', async () => {
    const t = await setup(10);
    const stop = new AbortController();
    const running = runJob({ ...t.args, flags: { workers: 0 }, signal: stop.signal, graceMs: 100 });
    const runId = await until('the run', async () => (await t.store.listRuns())[0]?.runId);
    const queue = t.queueOf(runId);
    await until('10 jobs queued', async () => ((await queued(queue)) === 10 ? true : undefined));
    stop.abort();
    expect((await running).exitCode).toBe(130);
    expect((await t.store.run(runId).getMeta())!.state).toBe('stopped');

    const r = await runCli(['cancel', runId], { env: t.env });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`cancelled run ${runId} (import of ${t.args.manifest}), which was stopped.`);
    expect(r.stdout).toContain('removed 10 jobs from its queue: 10 waiting.');
    expect(r.stdout).toContain('0 rows have a result, 10 have none; running the same import command again does the rest');
    expect(await queued(queue)).toBe(0);
    expect((await t.store.run(runId).getMeta())!.state).toBe('cancelled');
    expect((await runCli(['runs'], { env: t.env })).stdout).toMatch(new RegExp(`${runId} +import +cancelled +0/10`));

    // The same command again does every row (a cancelled run is resumed by its rerun only).
    const again = await runJob(t.args);
    expect(again.exitCode).toBe(0);
    expect(again.summary.counts.succeeded).toBe(10);
    expect(t.s.documents()).toHaveLength(10);
    await queue.close();
  }, 30_000);

  it('refuses a run whose owner is alive; with --force the owner stops (exit 130) and reports the rows left as cancelled', async () => {
    const t = await setup(8);
    const running = runJob({ ...t.args, flags: { workers: 0 } });
    const runId = await until('the run', async () => (await t.store.listRuns())[0]?.runId);
    const queue = t.queueOf(runId);
    await until('8 jobs queued', async () => ((await queued(queue)) === 8 ? true : undefined));

    const lines: string[] = [];
    const config = loadConfig({ env: { ...t.env, IDSYNC_API_URL: t.s.url } });
    const refused = await cancelRun({ config, log: silentLogger(), signal: new AbortController().signal, run: runId, out: (l) => lines.push(l) });
    expect(refused.exitCode).toBe(1);
    expect(lines.join('\n')).toMatch(new RegExp(`run ${runId} is running: its owner ${hostname()}:${process.pid} renewed its heartbeat \\d+s ago\\. Nothing was changed\\.`));
    expect(lines.join('\n')).toContain(`idsync cancel ${runId} --force`);
    expect(await queued(queue)).toBe(8);
    expect((await t.store.run(runId).getMeta())!.state).toBe('running');
    const cli = await runCli(['cancel', runId], { env: t.env });
    expect(cli.code).toBe(1);

    const forced = await runCli(['cancel', runId, '--force'], { env: t.env });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain('removed 8 jobs from its queue: 8 waiting.');
    expect(forced.stdout).toContain(`its owner ${hostname()}:${process.pid} notices within a second`);
    const r = await running;
    expect(r.ending).toBe('cancelled');
    expect(r.exitCode).toBe(130);
    expect(r.lines.join('\n')).toContain('the run was cancelled from elsewhere (idsync cancel)');
    const report = readFileSync(path.join(t.dir, 'rep', 'report.csv'), 'utf8');
    expect(report.match(/not done: the run was cancelled \(idsync cancel\)/g)).toHaveLength(8);
    const jsonl = readFileSync(path.join(t.dir, 'rep', 'report.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { errorCode?: string });
    expect(jsonl.filter((l) => l.errorCode === 'E_CANCELLED')).toHaveLength(8);
    expect((await t.store.run(runId).getMeta())!.state).toBe('cancelled');
    expect(await queued(queue)).toBe(0);
    expect(t.s.documents()).toHaveLength(0);
    await queue.close();
  }, 30_000);

  it('says which workers held jobs in flight; those finish and record their result, the rest are reported cancelled', async () => {
    const t = await setup(12, { latencyMs: 1500 });
    const running = runJob({ ...t.args, flags: { concurrency: 1 } });
    const runId = await until('the run', async () => (await t.store.listRuns())[0]?.runId);
    const queue = t.queueOf(runId);
    await until('jobs in flight', async () => ((await queue.getJobCountByTypes('active')) >= 2 && t.s.stats().inFlight > 0 ? true : undefined));
    const forced = await runCli(['cancel', runId, '--force'], { env: t.env });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toMatch(new RegExp(`(\\d+) of them were in flight on ${hostname()}:${process.pid} \\(\\1\\): each finishes its current attempt and records its result`));
    const r = await running;
    expect(r.exitCode).toBe(130);
    const report = readFileSync(path.join(t.dir, 'rep', 'report.csv'), 'utf8');
    // Every row is either done (the uploads in flight went through) or cancelled; none failed of the cancel itself.
    expect(report).not.toContain('Missing key');
    expect(r.summary.counts.succeeded).toBeGreaterThan(0);
    expect(r.summary.counts.succeeded).toBe(t.s.documents().length);
    expect(r.summary.counts.succeeded + (report.match(/not done: the run was cancelled/g) ?? []).length).toBe(12);
    await queue.close();
  }, 40_000);

  it('stops a watch from elsewhere with --force (exit 130, state cancelled)', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const watched = path.join(dir, 'in');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(watched);
    const prefix = keyPrefixFor(dir);
    const w = await startWatch({ dir: watched, apiUrl: s.url, password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep'), keyPrefix: prefix });
    const store = new ApiStore(redis, { apiUrl: s.url, root: prefix });
    const runId = (await store.listRuns())[0]!.runId;
    const forced = await runCli(['cancel', runId, '--force'], { env: { REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: prefix } });
    expect(forced.code).toBe(0);
    const started = Date.now();
    const r = await w.done;
    expect(r.exitCode).toBe(130);
    // The watch looks at its run every 5 s.
    expect(Date.now() - started).toBeLessThan(8_000);
    expect((await store.run(runId).getMeta())!.state).toBe('cancelled');
  }, 30_000);

  it('names a run it does not know (exit 2)', async () => {
    const t = await setup(1);
    const r = await runCli(['cancel', 'import-nothing'], { env: t.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/this Redis holds no idsync runs/);
    await runJob(t.args);
    const named = await runCli(['cancel', 'import-nothing'], { env: t.env });
    expect(named.code).toBe(2);
    expect(named.stderr).toContain(`no run "import-nothing" in this Redis for ${t.s.url}; \`idsync runs\` lists them`);
  });
});
