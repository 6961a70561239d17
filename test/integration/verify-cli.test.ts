import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parse } from 'csv-parse/sync';
import { describe, expect, inject, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

describe('idsync verify on the command line', () => {
  it('exits 0 when every row is verified, 1 when one is missing, 2 when it cannot start', async () => {
    const s = await withSandbox();
    const dir = tempDir('verify-cli');
    const manifest = writeImportManifest(dir, 3);
    const imported = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'r-import') });
    expect(imported.exitCode).toBe(0);
    const env = { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: freshKeyPrefix(), IDSYNC_STATE_DIR: path.join(dir, 'st') };

    const ok = await runCli(['verify', manifest, '--report-dir', path.join(dir, 'r1')], { env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/3 rows: 3 verified, 0 mismatch, 0 missing, 0 failed, 0 rejected/);

    const doc = (parse(readFileSync(path.join(dir, 'r-import', 'report.csv')), { columns: true }) as Array<Record<string, string>>)[1]!;
    expect((await fetch(`${s.origin}/_admin/documents/${doc.personId}/${doc.documentId}`, { method: 'DELETE' })).status).toBe(204);
    const one = await runCli(['verify', path.join(dir, 'r-import', 'report.csv'), '--report-dir', path.join(dir, 'r2'), '--concurrency', '2'], { env });
    expect(one.code, one.stderr).toBe(1);
    expect(one.stdout).toMatch(/3 rows: 2 verified, 0 mismatch, 1 missing, 0 failed, 0 rejected/);
    expect(one.stdout).toContain(`idsync verify ${path.join(dir, 'r2', 'failed.csv')}`);

    expect((await runCli(['verify', path.join(dir, 'none.csv')], { env })).code).toBe(2);
    const dry = await runCli(['verify', manifest, '--dry-run'], { env });
    expect(dry.code).toBe(2);
    expect(dry.stderr).toContain("unknown option '--dry-run'");
  }, 60_000);

  it('--help shows its options', async () => {
    const r = await runCli(['verify', '--help']);
    expect(r.code).toBe(0);
    for (const option of ['--remote', '--out <dir>', '--report-dir', '--concurrency', '--rate', '--attempts', '--workers']) expect(r.stdout).toContain(option);
    expect(r.stdout).not.toContain('--check-existing');
  });
});
