/**
 * The soak of the chaos suite: back-to-back imports of 200 documents under every API fault at
 * once, for IDSYNC_SOAK_SECONDS (default 150; 0 skips it). Each import's rows are checked through
 * the sandbox's own records like every other scenario's.
 */
import path from 'node:path';
import { expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { CHAOS_PASSWORD, chaosSandbox, describeFaults, MIXED, record, sandboxAnswers, verify } from './chaos-helpers.ts';

const soakSeconds = Number(process.env.IDSYNC_SOAK_SECONDS ?? 150);

it.skipIf(!(soakSeconds > 0))(`soak: mixed faults for ${soakSeconds} s of back-to-back imports`, { timeout: (soakSeconds + 300) * 1000 }, async () => {
  const s = await chaosSandbox(MIXED, 4);
  const end = Date.now() + soakSeconds * 1000;
  let runs = 0;
  let items = 0;
  const totals = { succeeded: 0, lost: 0, duplicates: 0 };
  let complete = true;
  const t0 = Date.now();
  while (Date.now() < end) {
    const dir = tempDir('soak');
    const manifest = writeImportManifest(dir, 200, { size: 2048 });
    const result = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: CHAOS_PASSWORD, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'report'), flags: { concurrency: 16, attempts: 12 } });
    const v = verify(s, path.join(dir, 'report'), 200, { manifest });
    runs++;
    items += 200;
    totals.succeeded += v.succeeded;
    totals.lost += v.lost;
    totals.duplicates += v.duplicates;
    complete &&= v.reportComplete && result.exitCode === 0;
  }
  record({ scenario: `soak: ${runs} back-to-back imports of 200 (in-process, C = 16)`, faults: describeFaults(MIXED, 4), items, ...totals, reportComplete: complete, seconds: (Date.now() - t0) / 1000, requests: sandboxAnswers(s) });
  expect(totals.lost).toBe(0);
  expect(totals.duplicates).toBe(0);
  expect(complete).toBe(true);
});
