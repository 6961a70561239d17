import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.ts';
import { AuthRefusedError } from '../../src/errors.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshRedisUrl, PEOPLE, runJob, writeImportManifest, type RunArgs } from '../helpers/job-runs.ts';

const ALL = ['Add Identity Files', 'Read Identity Files', 'Read Detections', 'Read All Identity'] as const;
const PASSWORD = 'migrator-pass-1';

let sandbox: Sandbox | undefined;
afterEach(async () => {
  await sandbox?.close();
  sandbox = undefined;
});

async function start(options: Parameters<typeof startSandbox>[0] = {}): Promise<Sandbox> {
  sandbox = await startSandbox({ admin: true, prefix: '/identities', users: [{ username: 'migrator', password: PASSWORD, permissions: [...ALL] }], ...options });
  return sandbox;
}

function baseArgs(s: Sandbox, manifest: string, dir: string, extra: Partial<RunArgs> = {}): RunArgs {
  return { command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: PASSWORD, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'report'), ...extra };
}

function readReport(dir: string): Array<Record<string, string>> {
  return parse(readFileSync(path.join(dir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
}

describe('idsync import against the sandbox', () => {
  it('uploads every row once with one request per document, and a rerun sends nothing', async () => {
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 24);
    const first = await runJob(baseArgs(s, manifest, dir));
    expect(first.exitCode).toBe(0);
    expect(first.summary.counts).toEqual({ succeeded: 24, skipped: 0, failed: 0, rejected: 0 });
    const docs = s.documents();
    expect(docs).toHaveLength(24);
    expect(docs.every((d) => d.uploads === 1)).toBe(true);
    const stats = s.stats();
    expect(stats.uploadRequests).toBe(24);
    expect(stats.logins).toBe(1);
    expect(stats.requests).toBe(25); // one login + one request per document: no existence checks on a brand-new run

    const report = readReport(path.join(dir, 'report'));
    expect(report.map((r) => r.row)).toEqual(Array.from({ length: 24 }, (_, i) => String(i + 1)));
    expect(report[0]).toMatchObject({ status: 'succeeded', action: 'uploaded', personId: PEOPLE[0], batch: 'B0', attempts: '1' });
    expect(report[0]!.documentId).toMatch(/^[0-9a-f-]{36}$/);
    const stored = docs.find((d) => d.documentId === report[0]!.documentId)!;
    expect(stored.sha256).toBe(report[0]!.sha256);
    expect(stored.name).toBe('Document 0');

    s.resetStats();
    const rerun = await runJob(baseArgs(s, manifest, dir, { reportDir: path.join(dir, 'report2') }));
    expect(rerun.exitCode).toBe(0);
    expect(rerun.summary.counts.skipped).toBe(24);
    expect(s.stats().uploadRequests).toBe(0);

    // Redis state gone (another database): the ledger alone keeps it from sending anything.
    s.resetStats();
    const fresh = await runJob(baseArgs(s, manifest, dir, { reportDir: path.join(dir, 'report3'), redisUrl: freshRedisUrl() }));
    expect(fresh.exitCode).toBe(0);
    expect(fresh.summary.counts.skipped).toBe(24);
    expect(s.stats().uploadRequests).toBe(0);
    expect(readReport(path.join(dir, 'report3'))[0]!.action).toBe('in-ledger');

    // Another machine (no ledger, no Redis state) with --check-existing: asks, sends nothing.
    s.resetStats();
    const other = await runJob(baseArgs(s, manifest, dir, { stateDir: path.join(dir, 'other-state'), reportDir: path.join(dir, 'report4'), redisUrl: freshRedisUrl(), flags: { checkExisting: true } }));
    expect(other.summary.counts.skipped).toBe(24);
    expect(s.stats().uploadRequests).toBe(0);
    expect(s.documents().every((d) => d.uploads === 1)).toBe(true);
  });

  it("ends when its own workers finish the last row, without waiting for the wait loop's next look", async () => {
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 12);
    // The loop looks once right after the enqueue; without the wake-up it would sleep 10 minutes.
    const run = await runJob(baseArgs(s, manifest, dir, { pollMs: 600_000 }));
    expect(run.exitCode).toBe(0);
    expect(run.summary.counts.succeeded).toBe(12);
  }, 20_000);

  it('rejects invalid rows with reasons, goes on, and failed.csv retries exactly those', async () => {
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 3, {
      extraRows: [`not-a-guid,files/doc-0.bin,Bad person,,,X`, `${PEOPLE[0]},files/missing.pdf,Missing,,,X`, `${PEOPLE[0]},files/doc-1.bin,,,,X`, `${PEOPLE[1]},files/doc-2.bin,Bad id,,123,X`],
    });
    const r = await runJob(baseArgs(s, manifest, dir));
    expect(r.exitCode).toBe(1);
    expect(r.summary.counts).toEqual({ succeeded: 3, skipped: 0, failed: 0, rejected: 4 });
    const report = readReport(path.join(dir, 'report'));
    expect(report.slice(3).map((x) => [x.status, x.error])).toEqual([
      ['rejected', 'personId "not-a-guid" is not a GUID'],
      ['rejected', 'file files/missing.pdf does not exist'],
      ['rejected', 'name is empty'],
      ['rejected', 'publicId "123" is not a GUID'],
    ]);
    const failed = parse(readFileSync(path.join(dir, 'report', 'failed.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(failed).toHaveLength(4);
    expect(failed[1]!.file).toBe(path.join(dir, 'files/missing.pdf'));
    expect(r.lines.join('\n')).toContain('failed.csv');
  });

  it('never skips a row whose explicit publicId is already stored with other content', async () => {
    const s = await start();
    const dir = tempDir();
    const id = '0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d';
    const manifest = writeImportManifest(dir, 2, { extraRows: [] });
    const text = readFileSync(manifest, 'utf8').trim().split('\n');
    // Both data rows name the same person and publicId but are different files.
    const rows = text.slice(1).map((line) => line.replace(/,,B(\d)$/, `,${id},B$1`).replace(/^[^,]+/, PEOPLE[0]!));
    writeFileSync(manifest, `${[text[0], ...rows].join('\n')}\n`);
    const r = await runJob(baseArgs(s, manifest, dir, { flags: { concurrency: 1 } }));
    expect(r.exitCode).toBe(1);
    const report = readReport(path.join(dir, 'report'));
    expect(report.map((x) => x.status).sort()).toEqual(['failed', 'succeeded']);
    const failed = report.find((x) => x.status === 'failed')!;
    expect(failed.error).toMatch(/is already stored with other content/);
    expect(failed.attempts).toBe('1');
    expect(s.documents()).toHaveLength(1);
    expect(s.documents()[0]!.uploads).toBe(1);
  });

  it('does not retry 403, and fails fast on refused credentials', async () => {
    const s = await start({ users: [{ username: 'reader', password: PASSWORD, permissions: ['Read Identity Files'] }, { username: 'migrator', password: PASSWORD, permissions: [...ALL] }] });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 2);
    const r = await runJob(baseArgs(s, manifest, dir, { username: 'reader' }));
    expect(r.exitCode).toBe(1);
    const report = readReport(path.join(dir, 'report'));
    expect(report.map((x) => [x.status, x.httpStatus, x.attempts])).toEqual([
      ['failed', '403', '1'],
      ['failed', '403', '1'],
    ]);
    await expect(runJob(baseArgs(s, manifest, dir, { password: 'wrong' }))).rejects.toBeInstanceOf(AuthRefusedError);
  });

  it('stores every document exactly once under mixed faults', async () => {
    const s = await start({ tokenTtlSeconds: 3, faults: { seed: 7, failRate: 0.05, throttleRate: 0.03, retryAfterSeconds: 1, resetRate: 0.03, lostResponseRate: 0.03, revokeEverySeconds: 2 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 60);
    const r = await runJob(baseArgs(s, manifest, dir, { flags: { attempts: 8 } }));
    expect(r.summary.counts).toEqual({ succeeded: 60, skipped: 0, failed: 0, rejected: 0 });
    const docs = s.documents();
    expect(docs).toHaveLength(60);
    expect(docs.filter((d) => d.uploads !== 1)).toEqual([]);
    const stats = s.stats();
    expect((stats.status['500'] ?? 0) + (stats.status['502'] ?? 0) + (stats.status['503'] ?? 0) + (stats.status['429'] ?? 0)).toBeGreaterThan(0);
  }, 120_000);

  it('keeps requests in flight within --concurrency and each second within --rate', async () => {
    const s = await start({ faults: { latencyMs: 40 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 40);
    const r = await runJob(baseArgs(s, manifest, dir, { flags: { concurrency: 3, rate: 15 } }));
    expect(r.exitCode).toBe(0);
    const stats = s.stats();
    expect(stats.maxInFlight).toBeLessThanOrEqual(3);
    const perSecond = stats.requestsPerSecond.map((x) => x.count);
    expect(Math.max(...perSecond)).toBeLessThanOrEqual(15);
  }, 60_000);
});
