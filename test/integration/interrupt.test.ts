import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { IDSYNC_BIN, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { writeImportManifest } from '../helpers/job-runs.ts';
import { sandboxEnv, withSandbox } from '../helpers/sandbox.ts';

function startImport(manifest: string, env: Record<string, string>) {
  const child = spawn(process.execPath, [IDSYNC_BIN, 'import', manifest, '--concurrency', '4'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', IDSYNC_LOG_FORMAT: 'json', IDSYNC_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += String(d)));
  child.stderr.on('data', (d) => (stderr += String(d)));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  return { child, exited, output: () => ({ stdout, stderr }) };
}

async function waitFor(predicate: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) throw new Error('timed out');
    await sleep(20);
  }
}

describe('crash and interrupt, then the same command again', () => {
  for (const how of ['SIGKILL', 'SIGINT'] as const) {
    it(`${how} mid-run: the rerun finishes every row and uploads nothing twice`, async () => {
      const s = await withSandbox({ faults: { latencyMs: 60 } });
      const dir = tempDir();
      const manifest = writeImportManifest(dir, 40);
      const env = {
        ...sandboxEnv(s),
        IDSYNC_STATE_DIR: path.join(dir, 'state'),
        IDSYNC_REPORT_DIR: path.join(dir, 'report'),
        IDSYNC_LOCK_DURATION_MS: '2000',
        IDSYNC_STALLED_INTERVAL_MS: '1000',
      };
      // No REDIS_URL: the embedded private Redis (AOF under the state dir) is part of what must survive.
      const first = startImport(manifest, env);
      await waitFor(() => s.documents().length >= 8);
      first.child.kill(how);
      const code = await first.exited;
      if (how === 'SIGINT') {
        expect(code, first.output().stderr).toBe(130);
        const summary = JSON.parse(readFileSync(path.join(dir, 'report', 'summary.json'), 'utf8'));
        expect(summary.interrupted).toBe(true);
        expect(summary.rows).toBe(40);
        // Rows not finished are `interrupted`, not failed, and there is one next step (#16).
        expect(summary.counts.failed).toBe(0);
        expect(summary.counts.interrupted).toBeGreaterThan(0);
        expect(summary.counts.succeeded + summary.counts.interrupted).toBe(40);
        expect(summary.errors).toEqual({ E_INTERRUPTED: summary.counts.interrupted });
        expect(first.output().stdout).toContain('run the same command again to resume');
        expect(first.output().stdout).not.toMatch(/retry|failed\.csv/);
      }
      expect(s.documents().length).toBeLessThan(40);

      const second = startImport(manifest, env);
      expect(await second.exited, second.output().stderr).toBe(0);
      const summary = JSON.parse(readFileSync(path.join(dir, 'report', 'summary.json'), 'utf8'));
      expect(summary.counts.failed + summary.counts.rejected).toBe(0);
      expect(summary.counts.succeeded + summary.counts.skipped).toBe(40);
      expect(s.documents()).toHaveLength(40);
      expect(s.documents().filter((d) => d.uploads !== 1)).toEqual([]);
    }, 90_000);
  }
});

describe('a second Ctrl-C', () => {
  it('exits 130 at once and leaves the previous report in the same folder whole', async () => {
    const s = await withSandbox({ faults: { latencyMs: 200 } });
    const dir = tempDir();
    const env = {
      ...sandboxEnv(s),
      IDSYNC_STATE_DIR: path.join(dir, 'state'),
      IDSYNC_REPORT_DIR: path.join(dir, 'report'),
    };
    const earlier = startImport(writeImportManifest(path.join(dir, 'a'), 3), env);
    expect(await earlier.exited, earlier.output().stderr).toBe(0);
    const before = readFileSync(path.join(dir, 'report', 'report.csv'), 'utf8');
    const beforeSummary = readFileSync(path.join(dir, 'report', 'summary.json'), 'utf8');
    expect(before.trim().split('\n')).toHaveLength(4);

    const next = startImport(writeImportManifest(path.join(dir, 'b'), 40), env);
    await waitFor(() => s.documents().length >= 5);
    next.child.kill('SIGINT');
    await waitFor(() => next.output().stderr.includes('interrupt') || next.output().stdout.includes('interrupt'), 10_000).catch(() => {});
    next.child.kill('SIGINT');
    expect(await next.exited, next.output().stderr).toBe(130);
    expect(next.output().stderr).toContain('second interrupt');

    // Either the new report was finished before the second signal, or the previous one is untouched:
    // never a mix, never a report without its summary.
    const summary = JSON.parse(readFileSync(path.join(dir, 'report', 'summary.json'), 'utf8')) as { rows: number; interrupted?: boolean };
    const rows = readFileSync(path.join(dir, 'report', 'report.csv'), 'utf8').trim().split('\n').length - 1;
    if (summary.rows === 3) {
      expect(readFileSync(path.join(dir, 'report', 'report.csv'), 'utf8')).toBe(before);
      expect(readFileSync(path.join(dir, 'report', 'summary.json'), 'utf8')).toBe(beforeSummary);
    } else {
      expect(summary).toMatchObject({ rows: 40, interrupted: true });
      expect(rows).toBe(40);
    }
  }, 60_000);
});

describe('Ctrl-C with uploads still in flight', () => {
  it('waits only the grace period, hands slow jobs back, and the rerun stores each document once', async () => {
    const { runJob } = await import('../helpers/job-runs.ts');
    const s = await withSandbox({ faults: { latencyMs: 6000 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 6);
    const controller = new AbortController();
    const common = { command: 'import' as const, manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state') };
    const first = runJob({ ...common, reportDir: path.join(dir, 'r1'), signal: controller.signal, graceMs: 200, flags: { concurrency: 3 } });
    await waitFor(() => s.stats().logins === 1 && s.stats().inFlight >= 2); // logged in, uploads in flight (3 s each)
    await sleep(300);
    controller.abort();
    const r = await first;
    expect(r.exitCode).toBe(130);
    // The grace (200 ms) ran out long before an upload (6 s) could end: nothing was stored, every
    // row was handed back and reported interrupted.
    expect(s.documents()).toHaveLength(0);
    expect(r.summary.counts.interrupted).toBe(6);
    s.setFaults({});
    const again = await runJob({ ...common, reportDir: path.join(dir, 'r2') });
    expect(again.exitCode).toBe(0);
    expect(s.documents()).toHaveLength(6);
    expect(s.documents().filter((d) => d.uploads !== 1)).toEqual([]);
  }, 60_000);
});
