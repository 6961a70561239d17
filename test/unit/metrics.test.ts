import { afterEach, describe, expect, it } from 'vitest';
import { register as globalRegistry } from 'prom-client';
import { ProcessMetrics, type RunView } from '../../src/engine/metrics.ts';
import { MetricsServer, type HealthChecks } from '../../src/engine/metrics-server.ts';
import { silentLogger } from '../../src/log.ts';
import { CONTROL_QUEUE } from '../../src/store/keys.ts';

/** The value of one sample line of Prometheus text, or undefined. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = m[2] ? m[2].split(/,(?=[a-z_]+=")/) : [];
    if (want.every((w) => have.includes(w)) && have.length === want.length) return Number(m[3]);
  }
  return undefined;
}

const run = (counts: Partial<Record<'succeeded' | 'skipped' | 'failed' | 'rejected', number>>, total: number): RunView => ({
  counts: async () => ({ succeeded: 0, skipped: 0, failed: 0, rejected: 0, ...counts }),
  total: async () => total,
  queueCounts: async () => ({ waiting: 5, active: 2, delayed: 1 }),
});

describe('ProcessMetrics', () => {
  it('counts rows by status and error class, bytes, requests by endpoint and status class, retries, fsyncs', async () => {
    const m = new ProcessMetrics({ concurrency: 8 });
    m.rowFinished({ row: 1, status: 'succeeded', action: 'uploaded', bytes: 100 }, 'upload');
    m.rowFinished({ row: 2, status: 'succeeded', action: 'uploaded', bytes: 50 }, 'upload');
    m.rowFinished({ row: 3, status: 'failed', action: 'upload', errorCode: 'E_FORBIDDEN' }, 'upload');
    m.rowFinished({ row: 1, status: 'succeeded', action: 'downloaded', bytes: 7 }, 'download');
    m.request({ method: 'POST', endpoint: '/api/v1/people/fileDocuments/upload', status: 200, ms: 30 });
    m.request({ method: 'POST', endpoint: '/api/v1/people/fileDocuments/upload', status: 503, ms: 2000 });
    m.request({ method: 'GET', endpoint: '/api/v1/people/{personId}/fileDocuments/{documentId}/data', error: 'E_NETWORK', ms: 5 });
    m.retried('E_SERVER');
    m.retried('E_SERVER');
    m.fsync(3);
    const text = await m.text();
    expect(sample(text, 'idsync_rows_total', { kind: 'upload', status: 'succeeded', error_class: '' })).toBe(2);
    expect(sample(text, 'idsync_rows_total', { kind: 'upload', status: 'failed', error_class: 'E_FORBIDDEN' })).toBe(1);
    expect(sample(text, 'idsync_bytes_total', { direction: 'sent' })).toBe(150);
    expect(sample(text, 'idsync_bytes_total', { direction: 'received' })).toBe(7);
    expect(sample(text, 'idsync_api_request_duration_seconds_count', { endpoint: '/api/v1/people/fileDocuments/upload', status_class: '2xx' })).toBe(1);
    expect(sample(text, 'idsync_api_request_duration_seconds_bucket', { le: '0.05', endpoint: '/api/v1/people/fileDocuments/upload', status_class: '2xx' })).toBe(1);
    expect(sample(text, 'idsync_api_request_duration_seconds_bucket', { le: '1', endpoint: '/api/v1/people/fileDocuments/upload', status_class: '5xx' })).toBe(0);
    expect(sample(text, 'idsync_api_request_duration_seconds_count', { endpoint: '/api/v1/people/{personId}/fileDocuments/{documentId}/data', status_class: 'error' })).toBe(1);
    expect(sample(text, 'idsync_api_responses_total', { endpoint: '/api/v1/people/fileDocuments/upload', status: '503' })).toBe(1);
    expect(sample(text, 'idsync_retries_total', { error_class: 'E_SERVER' })).toBe(2);
    expect(sample(text, 'idsync_ledger_fsync_seconds_count')).toBe(1);
    expect(sample(text, 'idsync_concurrency')).toBe(8);
    expect(text).toMatch(/^idsync_build_info\{version="[^"]+",node="[^"]+"\} 1$/m);
    for (const line of text.split('\n')) if (line && !line.startsWith('#')) expect(line).toMatch(/^idsync_/);
  });

  it('reads the served and followed runs, their queues and the jobs in flight at each scrape', async () => {
    const m = new ProcessMetrics({ concurrency: 4 });
    let active = 3;
    m.watchPool({ served: () => [CONTROL_QUEUE, 'import-a'], active: () => active });
    const views: Record<string, RunView> = { 'import-a': run({ succeeded: 10, failed: 2 }, 100), 'export-b': run({ skipped: 4 }, 4) };
    m.lookAtRuns((runId) => views[runId]!);
    m.followRun('export-b');
    let text = await m.text();
    expect(sample(text, 'idsync_run_rows', { run_id: 'import-a', status: 'succeeded' })).toBe(10);
    expect(sample(text, 'idsync_run_rows', { run_id: 'import-a', status: 'failed' })).toBe(2);
    expect(sample(text, 'idsync_run_rows', { run_id: 'export-b', status: 'skipped' })).toBe(4);
    expect(sample(text, 'idsync_run_rows_expected', { run_id: 'import-a' })).toBe(100);
    expect(sample(text, 'idsync_queue_jobs', { run_id: 'import-a', state: 'waiting' })).toBe(5);
    expect(sample(text, 'idsync_queue_jobs', { run_id: 'import-a', state: 'delayed' })).toBe(1);
    expect(text).not.toContain(`run_id="${CONTROL_QUEUE}"`);
    expect(sample(text, 'idsync_jobs_active')).toBe(3);
    active = 0;
    text = await m.text();
    expect(sample(text, 'idsync_jobs_active')).toBe(0);
  });

  it('leaves out what Redis cannot answer, instead of failing the scrape', async () => {
    const m = new ProcessMetrics({ concurrency: 1 });
    m.lookAtRuns(() => ({ counts: () => Promise.reject(new Error('down')), total: () => Promise.reject(new Error('down')), queueCounts: () => Promise.reject(new Error('down')) }));
    m.followRun('r');
    const text = await m.text();
    expect(sample(text, 'idsync_run_rows', { run_id: 'r', status: 'succeeded' })).toBeUndefined();
    expect(sample(text, 'idsync_concurrency')).toBe(1);
  });

  it('keeps a registry per instance: two sessions in one process, nothing in the global registry', async () => {
    const a = new ProcessMetrics({ concurrency: 1 });
    const b = new ProcessMetrics({ concurrency: 2 });
    a.retried('E_NETWORK');
    expect(sample(await b.text(), 'idsync_retries_total', { error_class: 'E_NETWORK' })).toBeUndefined();
    expect(await globalRegistry.metrics()).not.toContain('idsync_');
  });
});

describe('MetricsServer', () => {
  let server: MetricsServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  async function start(health: () => Promise<HealthChecks>, ready: () => { ok: boolean; detail: string }) {
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, metrics: new ProcessMetrics({ concurrency: 2 }), health, ready, log: silentLogger() });
    return server.url;
  }

  it('serves /metrics, /healthz and /readyz, 503 when a check fails or it is not ready', async () => {
    let redis = { ok: true, detail: 'PING answered in 1 ms' };
    let ready = { ok: false, detail: 'opening' };
    const url = await start(async () => ({ redis, login: { ok: true, detail: 'logged in' } }), () => ready);
    const metrics = await fetch(`${url}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await metrics.text()).toContain('idsync_concurrency 2');

    let health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', checks: { up: { ok: true, detail: `pid ${process.pid}` }, redis, login: { ok: true, detail: 'logged in' } } });
    redis = { ok: false, detail: 'no answer to PING within 2000 ms' };
    health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: 'failing', checks: { redis } });

    expect((await fetch(`${url}/readyz`)).status).toBe(503);
    ready = { ok: true, detail: 'serving 1 queue(s)' };
    const r = await fetch(`${url}/readyz`);
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({ ready: true, detail: 'serving 1 queue(s)' });

    expect((await fetch(`${url}/other`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('says where it listens, and warns when that is not loopback', async () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const log = { info: (_o: unknown, msg: string) => lines.push({ level: 'info', msg }), warn: (_o: unknown, msg: string) => lines.push({ level: 'warn', msg }), debug: () => undefined } as never;
    const ok = async () => ({});
    const ready = () => ({ ok: true, detail: '' });
    server = await MetricsServer.start({ host: '127.0.0.1', port: 0, metrics: new ProcessMetrics({ concurrency: 1 }), health: ok, ready, log });
    await server.close();
    server = await MetricsServer.start({ host: '0.0.0.0', port: 0, metrics: new ProcessMetrics({ concurrency: 1 }), health: ok, ready, log });
    expect(lines[0]).toMatchObject({ level: 'info', msg: expect.stringMatching(/^metrics at http:\/\/127\.0\.0\.1:\d+\/metrics$/) });
    expect(lines[1]).toMatchObject({ level: 'warn', msg: expect.stringContaining('reachable from other machines') });
  });

  it('refuses an address in use with a clear message', async () => {
    const url = await start(async () => ({}), () => ({ ok: true, detail: '' }));
    const port = Number(new URL(url).port);
    await expect(MetricsServer.start({ host: '127.0.0.1', port, metrics: new ProcessMetrics({ concurrency: 1 }), health: async () => ({}), ready: () => ({ ok: true, detail: '' }), log: silentLogger() })).rejects.toThrow(
      `--metrics-listen 127.0.0.1:${port}: cannot listen (EADDRINUSE)`,
    );
  });
});
