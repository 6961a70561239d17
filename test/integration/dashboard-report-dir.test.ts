import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { ApiStore } from '../../src/store/api-store.ts';
import { startDashboard } from '../helpers/dashboard-runs.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const redis = new Redis(inject('redisUrl'), { maxRetriesPerRequest: null });
afterAll(async () => {
  await redis.quit();
});

/**
 * The dashboard reads a run's report dir from Redis, which anyone who can write to Redis can
 * change: it serves only the report's own file names, and nothing from a dir whose summary.json
 * names another run.
 */
describe('dashboard report files and a reportDir rewritten in Redis', () => {
  it('does not serve files of a folder the run never wrote its report to', async () => {
    const s = await withSandbox();
    const dir = tempDir('dash-report-dir');
    const manifest = writeImportManifest(dir, 2);
    const prefix = keyPrefixFor(dir);
    const r = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep') });
    expect(r.exitCode).toBe(0);

    const store = new ApiStore(redis, { apiUrl: s.url, root: prefix });
    const runId = (await store.listRuns())[0]!.runId;
    const privateDir = path.join(dir, 'home-of-the-dashboard-user');
    mkdirSync(privateDir);
    writeFileSync(path.join(privateDir, 'id_rsa'), 'PRIVATE KEY');
    // The attacker's one Redis command:
    await redis.hset(store.run(runId).keys.meta, 'reportDir', privateDir);

    const { dashboard: d, stop } = await startDashboard(prefix);
    try {
      const res = await fetch(`${d.url}/runs/${runId}/files/id_rsa`);
      const body = await res.text();
      expect(body).not.toContain('PRIVATE KEY');
      expect(res.status).toBe(404);

      // Another run's report folder: its files keep their names, but its summary names that run.
      const other = path.join(dir, 'another-run');
      mkdirSync(other);
      writeFileSync(path.join(other, 'report.csv'), 'row,status\n1,secret-row\n');
      writeFileSync(path.join(other, 'summary.json'), JSON.stringify({ runId: 'import-someone-else' }));
      await redis.hset(store.run(runId).keys.meta, 'reportDir', other);
      const theirs = await fetch(`${d.url}/runs/${runId}/files/report.csv`);
      expect(await theirs.text()).not.toContain('secret-row');
      expect(theirs.status).toBe(404);

      // Its own folder again: served.
      await redis.hset(store.run(runId).keys.meta, 'reportDir', path.join(dir, 'rep'));
      const own = await fetch(`${d.url}/runs/${runId}/files/report.csv`);
      expect(own.status).toBe(200);
      expect(await own.text()).toContain('succeeded');
    } finally {
      await stop();
    }
  });
});
