import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { runVerify } from '../../src/commands/verify/run-verify.ts';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, runJob } from '../helpers/job-runs.ts';
import { sandboxEnv, withSandbox } from '../helpers/sandbox.ts';

/**
 * report.csv prefixes a cell starting with `= + - @` with `'` (formula safety); verify reads the
 * `output` cell back as the export wrote it, so `-front.jpg` is found, not reported missing.
 */
describe('verify of an export report whose output starts with a formula character', () => {
  it('finds the file the export wrote', async () => {
    const s = await withSandbox();
    const dir = tempDir('review-verify-escaped');
    const face = '66dbcf71-dcc3-4aff-a0df-c31df823e289';
    const manifest = path.join(dir, 'export.csv');
    mkdirSync(path.join(dir, 'out'));
    writeFileSync(manifest, `type,faceId,output\nenrollmentPhoto,${face},-front.jpg\nenrollmentPhoto,${face},plain.jpg\n`);
    const exported = await runJob({ command: 'export', manifest, outDir: path.join(dir, 'out'), apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'r-export') });
    expect(exported.exitCode).toBe(0);

    const config = loadConfig({
      env: {
        ...sandboxEnv(s),
        REDIS_URL: inject('redisUrl'),
        IDSYNC_REDIS_PREFIX: freshKeyPrefix(),
        IDSYNC_STATE_DIR: path.join(dir, 'state-verify'),
        IDSYNC_REPORT_DIR: path.join(dir, 'r-verify'),
      },
    });
    const verified = await runVerify({
      input: path.join(dir, 'r-export', 'report.csv'),
      outDir: path.join(dir, 'out'),
      remote: false,
      config,
      log: silentLogger(),
      signal: new AbortController().signal,
      out: () => undefined,
      tty: false,
      pollMs: 50,
    });
    expect(verified.summary.counts).toMatchObject({ verified: 2, missing: 0 });
    expect(verified.exitCode).toBe(0);
  });
});
