import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { workerPool } from '../../src/engine/run-services.ts';
import { Session } from '../../src/engine/session.ts';
import { silentLogger } from '../../src/log.ts';
import { IDSYNC_BIN, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, writeImportManifest } from '../helpers/job-runs.ts';
import { sandboxEnv, withSandbox } from '../helpers/sandbox.ts';

const HEALTHCHECK = path.resolve(import.meta.dirname, '../../docker/healthcheck.mjs');

/** The value of one sample of Prometheus text (labels in any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ? m[2].split(/,(?=[a-z_]+=")/) : [];
    const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
    if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(m[3]);
  }
  return undefined;
}

async function until<T>(look: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await look();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error('timed out');
    await sleep(25);
  }
}

describe('--metrics-listen (#16)', () => {
  it('during an import, /metrics, /healthz and /readyz answer, and the Docker healthcheck finds it healthy', async () => {
    const s = await withSandbox({ prefix: '/identities', faults: { latencyMs: 80 } });
    const dir = tempDir();
    const rows = 60;
    const manifest = writeImportManifest(dir, rows, { size: 32 });
    const child = spawn(process.execPath, [IDSYNC_BIN, 'import', manifest, '--concurrency', '2', '--metrics-listen', '127.0.0.1:0'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        IDSYNC_LOG_FORMAT: 'json',
        ...sandboxEnv(s),
        REDIS_URL: inject('redisUrl'),
        IDSYNC_REDIS_PREFIX: freshKeyPrefix(),
        IDSYNC_STATE_DIR: path.join(dir, 'state'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const base = await until(() => /"msg":"metrics at (http:\/\/127\.0\.0\.1:\d+)\/metrics"/.exec(stderr)?.[1]);
      await until(async () => ((await fetch(`${base}/readyz`)).status === 200 ? true : undefined));
      // Mid-run: some rows done, not all.
      const text = await until(async () => {
        const t = await (await fetch(`${base}/metrics`)).text();
        const done = sample(t, 'idsync_rows_total', { kind: 'upload', status: 'succeeded', error_class: '' }) ?? 0;
        return done >= 5 ? t : undefined;
      });
      const runId = /run_id="(import-[0-9a-f]+)"/.exec(text)?.[1];
      expect(runId).toBeDefined();
      expect(sample(text, 'idsync_run_rows_expected', { run_id: runId! })).toBe(rows);
      expect(sample(text, 'idsync_run_rows', { run_id: runId!, status: 'succeeded' })).toBeGreaterThanOrEqual(5);
      expect(sample(text, 'idsync_queue_jobs', { run_id: runId!, state: 'waiting' })).toBeGreaterThan(0);
      expect(sample(text, 'idsync_api_request_duration_seconds_count', { endpoint: '/api/v1/people/fileDocuments/upload', status_class: '2xx' })).toBeGreaterThanOrEqual(5);
      expect(sample(text, 'idsync_api_request_duration_seconds_count', { endpoint: '/api/v1/authenticate', status_class: '2xx' })).toBe(1);
      expect(sample(text, 'idsync_logins_total')).toBe(1);
      expect(sample(text, 'idsync_ledger_fsync_seconds_count')).toBeGreaterThan(0);
      expect(sample(text, 'idsync_concurrency')).toBe(2);
      expect(sample(text, 'idsync_bytes_total', { direction: 'sent' })).toBeGreaterThan(0);

      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toMatchObject({ status: 'ok', checks: { up: { ok: true }, redis: { ok: true }, login: { ok: true } } });

      const port = new URL(base).port;
      const check = await new Promise<{ code: number; out: string }>((resolve) =>
        execFile(process.execPath, [HEALTHCHECK], { env: { PATH: process.env.PATH ?? '', IDSYNC_METRICS_LISTEN: `127.0.0.1:${port}` } }, (err, out) => resolve({ code: err ? 1 : 0, out })),
      );
      expect(check).toEqual({ code: 0, out: `healthy: ${base}/healthz 200\n` });
      expect(await exited, stderr).toBe(0);
      // Closed with the session.
      await expect(fetch(`${base}/healthz`)).rejects.toThrow();
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);

  it('/healthz fails when Redis stops answering; /readyz waits for the workers to serve', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const config = loadConfig({
      env: { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: freshKeyPrefix(), IDSYNC_STATE_DIR: path.join(dir, 'state'), IDSYNC_METRICS_LISTEN: '127.0.0.1:0' },
    });
    const session = await Session.open({ config, log: silentLogger(), signal: new AbortController().signal });
    try {
      const base = session.metricsUrl!;
      expect(await (await fetch(`${base}/readyz`)).json()).toEqual({ ready: false, detail: 'open; its workers do not serve yet' });
      const pool = workerPool(session, 1000);
      await pool.serve('some-run');
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
      expect((await fetch(`${base}/healthz`)).status).toBe(200);
      session.store.redis.disconnect();
      const failing = await fetch(`${base}/healthz`);
      expect(failing.status).toBe(503);
      expect(await failing.json()).toMatchObject({ status: 'failing', checks: { redis: { ok: false }, login: { ok: true } } });
    } finally {
      await session.close();
    }
  }, 30_000);
});
