import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { duplicateKeys, logCapture } from '../helpers/log-lines.ts';

const PASSWORD = 'migrator-pass-1';
const ALL = ['Add Identity Files', 'Read Identity Files', 'Read Detections', 'Read All Identity'] as Array<'Add Identity Files' | 'Read Identity Files' | 'Read Detections' | 'Read All Identity'>;
let sandbox: Sandbox | undefined;
afterEach(async () => {
  await sandbox?.close();
  sandbox = undefined;
});

/** About 35 % of requests fail: 5xx, connection resets and 429s (Retry-After 0 keeps the test short). */
const FAULTS = { failRate: 0.2, resetRate: 0.08, throttleRate: 0.07, retryAfterSeconds: 0 };

async function importUnderFaults(rows: number, level: 'info' | 'debug', seed: number) {
  sandbox = await startSandbox({ prefix: '/identities', users: [{ username: 'migrator', password: PASSWORD, permissions: ALL }], faults: { seed, ...FAULTS } });
  const dir = tempDir();
  const manifest = writeImportManifest(dir, rows, { size: 64 });
  const logs = logCapture();
  const log = createLogger({ level, format: 'json', destination: logs.stream }).child({ command: 'import' });
  const reportDir = path.join(dir, 'report');
  const run = await runJob({ command: 'import', manifest, apiUrl: sandbox.url, username: 'migrator', password: PASSWORD, stateDir: path.join(dir, 'state'), reportDir, log });
  const report = readFileSync(path.join(reportDir, 'report.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const entries = logs.lines.map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string; level: number });
  return { run, lines: logs.lines, entries, report, stats: sandbox.stats() };
}

describe('calm logs (#16)', () => {
  it('a 1,000-row import under ~35 % faults logs a few dozen lines at info: JSON, unique keys, a hostname, no stack', async () => {
    const { run, lines, entries, report, stats } = await importUnderFaults(1000, 'info', 16);
    expect(run.summary.rows).toBe(1000);
    expect(run.summary.counts.succeeded + run.summary.counts.failed).toBe(1000);
    const faults = ['500', '502', '503', '429'].reduce((n, s) => n + (stats.status[s] ?? 0), 0);
    expect(faults).toBeGreaterThan(300);

    // Each row that failed for good is one warning; retries and throttles are not info lines.
    expect(entries.filter((e) => e.msg === 'job failed for good')).toHaveLength(run.summary.counts.failed);
    expect(entries.filter((e) => /slow down/.test(e.msg)).length).toBeLessThanOrEqual(2);
    expect(entries.filter((e) => /retry/.test(e.msg))).toEqual([]);
    expect(lines.length).toBeLessThanOrEqual(60);
    for (const line of lines) {
      expect(duplicateKeys(line), line).toEqual([]);
      expect(JSON.parse(line), line).toMatchObject({ hostname: expect.any(String), pid: expect.any(Number), runId: run.summary.runId });
      expect(line).not.toMatch(/"stack"|\\n\s+at /);
    }
    // A failed existence check says so (it is not the upload's own failure).
    for (const row of report.filter((r) => r.errorCode === 'E_CHECK_FAILED')) expect(row.error).toMatch(/^could not check whether document [0-9a-f-]{36} exists before sending it, so nothing was sent: GET .*\/data (answered 5\d\d|failed: \w+)/);
    for (const row of report.filter((r) => r.status === 'failed')) expect(row.retryable).toBe(true);
  }, 120_000);

  it('at debug, a retry is one line (with its stack), and every line still has unique keys', async () => {
    const { run, entries, lines } = await importUnderFaults(150, 'debug', 7);
    expect(run.summary.rows).toBe(150);
    const retries = entries.filter((e) => e.msg === 'job failed; will retry');
    expect(retries.length).toBeGreaterThan(10);
    // One line per failed attempt: never two for the same row and attempt.
    for (const r of retries) expect(r).toMatchObject({ err: { stack: expect.stringMatching(/\n\s+at /) }, row: expect.any(Number), attempt: expect.any(Number) });
    const perJob = new Map<string, number>();
    for (const r of retries) perJob.set(`${String(r.row)}:${String(r.attempt)}`, (perJob.get(`${String(r.row)}:${String(r.attempt)}`) ?? 0) + 1);
    expect([...perJob.values()].every((n) => n === 1)).toBe(true);
    for (const line of lines) expect(duplicateKeys(line), line).toEqual([]);
  }, 120_000);

  it('the CLI (an esbuild bundle) maps stack traces to the TypeScript sources, at debug only', async () => {
    sandbox = await startSandbox({ prefix: '/identities', users: [{ username: 'migrator', password: PASSWORD, permissions: ALL }], faults: { seed: 3, failRate: 0.3 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 20, { size: 16 });
    const env = { IDSYNC_API_URL: sandbox.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: PASSWORD, REDIS_URL: inject('redisUrl'), IDSYNC_STATE_DIR: path.join(dir, 'state') };
    const debug = await runCli(['import', manifest, '--log-level', 'debug', '--attempts', '3', '--report-dir', path.join(dir, 'r1')], { env: { ...env, IDSYNC_REDIS_PREFIX: freshKeyPrefix() }, cwd: dir, timeoutMs: 90_000 });
    expect([0, 1]).toContain(debug.code);
    const stacks = debug.stderr.split('\n').filter((l) => l.includes('will retry')).map((l) => (JSON.parse(l) as { err: { stack: string } }).err.stack);
    expect(stacks.length).toBeGreaterThan(0);
    for (const stack of stacks) {
      expect(stack).toMatch(/\(.*\/src\/api\/client\.ts:\d+:\d+\)/);
      expect(stack).not.toMatch(/chunk-\w+\.mjs|main\.mjs/);
    }
    const info = await runCli(['import', manifest, '--report-dir', path.join(dir, 'r2')], { env: { ...env, IDSYNC_REDIS_PREFIX: freshKeyPrefix(), IDSYNC_STATE_DIR: path.join(dir, 'state2') }, cwd: dir, timeoutMs: 90_000 });
    expect([0, 1]).toContain(info.code);
    expect(info.stderr).not.toMatch(/"stack"|\bat /);
    for (const line of info.stderr.trim().split('\n')) expect(JSON.parse(line)).toHaveProperty('hostname');
  }, 200_000);
});
