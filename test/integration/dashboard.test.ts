import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import type { Dashboard } from '../../src/commands/dashboard/dashboard-server.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { startDashboard } from '../helpers/dashboard-runs.ts';
import { REPO_ROOT, tempDir, until } from '../helpers/fixtures.ts';
import { keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
const stops: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop();
  await redis.quit();
});

/** An import against a sandbox (slow while `latencyMs` holds), its store, and a way to open a dashboard on its Redis. */
async function importRun(rows: number, latencyMs = 0) {
  const s = await withSandbox({ faults: { latencyMs } });
  const dir = tempDir();
  const manifest = writeImportManifest(dir, rows, { extraRows: ['not-a-guid,files/doc-0.bin,Bad row,,,B0'] });
  const prefix = keyPrefixFor(dir);
  const store = new ApiStore(redis, { apiUrl: s.url, root: prefix });
  const reportDir = path.join(dir, 'rep');
  const running = runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir, flags: { concurrency: 1 } });
  running.catch(() => undefined);
  const runId = await until('the run', async () => (await store.listRuns())[0]?.runId);
  const dashboard = async (options: { token?: string } = {}): Promise<Dashboard> => {
    let tokenFile: string | undefined;
    if (options.token) {
      tokenFile = path.join(dir, 'token');
      writeFileSync(tokenFile, `${options.token}\n`, { mode: 0o600 });
    }
    const started = await startDashboard(prefix, tokenFile ? { authTokenFile: tokenFile } : {});
    stops.push(started.stop);
    return started.dashboard;
  };
  return { s, dir, store, runId, running, reportDir, dashboard, finish: () => s.setFaults({}) };
}

describe('idsync dashboard over HTTP', () => {
  it('serves the runs, a run, its error classes and its report files (only those), JSON, and bull-board read-only', async () => {
    const run = await importRun(6);
    const r = await run.running;
    expect(r.exitCode).toBe(1);
    // A link in the report folder leads nowhere: it is neither listed nor served.
    symlinkSync('/etc/passwd', path.join(run.reportDir, 'passwd.csv'));
    const d = await run.dashboard();
    const get = (p: string, init?: RequestInit) => fetch(`${d.url}${p}`, init);

    const runs = await get('/runs');
    expect(runs.status).toBe(200);
    expect(runs.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(runs.headers.get('cache-control')).toBe('no-store');
    const runsHtml = await runs.text();
    expect(runsHtml).toContain(`<tr data-run="${run.runId}">`);
    expect(runsHtml).toContain('<span class="state-done"');

    const page = await (await get(`/runs/${run.runId}`)).text();
    expect(page).toContain('<b data-count="succeeded">6</b>');
    expect(page).toContain('<b data-count="rejected">1</b>');
    expect(page).toContain('<svg id="progress"');
    expect(page).toContain('<tr data-class="E_ROW_INVALID">');
    expect(page).toContain(`href="/runs/${run.runId}/files/report.csv"`);
    expect(page).not.toContain('passwd.csv');
    expect(page).toContain(`href="/queues/queue/${run.runId}"`);

    const errors = await (await get(`/runs/${run.runId}/errors`)).text();
    expect(errors).toContain('personId &quot;not-a-guid&quot; is not a GUID');

    const api = (await (await get(`/api/runs/${run.runId}`)).json()) as { counts: Record<string, number>; state: string; timeline: Array<{ done: number }>; files: Array<{ name: string }> };
    expect(api.state).toBe('done');
    expect(api.counts).toEqual({ succeeded: 6, skipped: 0, failed: 0, rejected: 1, interrupted: 0 });
    expect(api.timeline.reduce((a, m) => a + m.done, 0)).toBe(6);
    expect(api.files.map((f) => f.name)).toEqual(['failed.csv', 'report.csv', 'report.jsonl', 'summary.json']);

    const csv = await get(`/runs/${run.runId}/files/report.csv`);
    expect(csv.status).toBe(200);
    expect(csv.headers.get('content-type')).toBe('text/csv; charset=utf-8');
    expect(await csv.text()).toBe(readFileSync(path.join(run.reportDir, 'report.csv'), 'utf8'));
    for (const bad of ['passwd.csv', '..%2F..%2F..%2Fetc%2Fpasswd', '.hidden', 'nope.csv']) expect((await get(`/runs/${run.runId}/files/${bad}`)).status, bad).toBe(404);
    expect((await get('/runs/import-nope')).status).toBe(404);

    // bull-board: the control queue and the run's queue; its actions are refused.
    expect((await get('/queues')).status).toBe(200);
    const queues = (await (await get('/queues/api/queues')).json()) as { queues: Array<{ name: string; readOnlyMode: boolean }> };
    expect(queues.queues.map((q) => q.name).sort()).toEqual(['control', run.runId].sort());
    expect(queues.queues.every((q) => q.readOnlyMode)).toBe(true);
    expect((await get(`/queues/api/queues/${run.runId}/pause`, { method: 'PUT' })).status).toBe(405);
    expect((await get('/runs', { method: 'POST' })).status).toBe(405);

    // A page asked for under another host name (DNS rebinding) is refused.
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${d.url}/runs`, { headers: { host: 'attacker.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(421);
  }, 40_000);

  it('with --auth-token-file asks for the token (bearer or basic auth), and elsewhere than loopback only with one', async () => {
    const run = await importRun(1);
    await run.running;
    const token = 'tok-0123456789abcdef';
    const d = await run.dashboard({ token });
    const plain = await fetch(`${d.url}/runs`);
    expect(plain.status).toBe(401);
    expect(plain.headers.get('www-authenticate')).toBe('Basic realm="idsync", charset="UTF-8"');
    expect((await fetch(`${d.url}/runs`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
    expect((await fetch(`${d.url}/api/runs`, { headers: { authorization: `Basic ${Buffer.from(`me:${token}`).toString('base64')}` } })).status).toBe(200);
    expect((await fetch(`${d.url}/queues/api/queues`, { headers: { authorization: 'Bearer wrong-token-0000000' } })).status).toBe(401);

    const refused = await runCli(['dashboard', '--listen', '0.0.0.0:0'], { env: { REDIS_URL: inject('redisUrl') } });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('the dashboard shows personal data');
    expect(refused.stderr).toContain('refusing 0.0.0.0');
  }, 30_000);
});

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
if (!CHROMIUM) console.warn('[dashboard browser test] SKIPPED: no chromium binary (/usr/bin/chromium); install it with `apt-get install -y chromium` (.ci/run does)');

describe.skipIf(!CHROMIUM)('idsync dashboard in a real browser (headless Chromium)', () => {
  // The screenshot goes to a temp folder; IDSYNC_UPDATE_SCREENSHOT=1 writes docs/dashboard.png (a test run leaves the checkout clean).
  it('renders a running import, its counts, its progress and its queue; a screenshot of its run page', async () => {
    const { chromium } = await import('playwright-core');
    const run = await importRun(30, 250);
    const d = await run.dashboard();
    const browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox'] });
    stops.push(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    try {
      await until('rows done', async () => ((await run.store.run(run.runId).counts()).succeeded >= 4 ? true : undefined));
      await page.goto(`${d.url}/runs`);
      await expect.poll(() => page.locator(`tr[data-run="${run.runId}"] .state-running`).count()).toBe(1);

      await page.goto(`${d.url}/runs/${run.runId}`);
      expect(await page.locator('h1').textContent()).toContain(run.runId);
      expect(await page.locator('dd.state-running').textContent()).toMatch(/^running \(owner /);
      expect(Number(await page.locator('[data-count="succeeded"]').textContent())).toBeGreaterThanOrEqual(4);
      expect(await page.locator('[data-count="rejected"]').textContent()).toBe('1');
      expect(await page.locator('#progress rect.done').count()).toBeGreaterThan(0);
      const shot = process.env.IDSYNC_UPDATE_SCREENSHOT === '1' ? path.join(REPO_ROOT, 'docs', 'dashboard.png') : path.join(tempDir('dashboard-shot'), 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(statSync(shot).size).toBeGreaterThan(10_000);

      run.finish();
      expect((await run.running).exitCode).toBe(1);
      await page.reload();
      expect(await page.locator('dd.state-done').count()).toBe(1);
      expect(await page.locator('[data-count="succeeded"]').textContent()).toBe('30');
      expect(await page.locator('[data-count="done"]').textContent()).toBe('31 / 31');
      expect(await page.locator('#errors tr[data-class="E_ROW_INVALID"] td.num').first().textContent()).toBe('0');
      // A CSV link downloads in a browser: fetch it as the page would.
      const href = await page.locator('#files a:text("report.csv")').getAttribute('href');
      const csv = await page.request.get(`${d.url}${href}`);
      expect(csv.status()).toBe(200);
      expect(await csv.text()).toContain('row,status,action');

      await page.goto(`${d.url}/queues/queue/${run.runId}`);
      await page.getByText(run.runId).first().waitFor({ timeout: 15_000 });
      await page.goto(`${d.url}/queues`);
      await page.getByText('control').first().waitFor({ timeout: 15_000 });
    } finally {
      run.finish();
      await run.running.catch(() => undefined);
    }
  }, 60_000);
});
