import { readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

/**
 * A rerun of an export looks at the disk: a file at its final name is done, but not an empty one,
 * which no download can have produced (an empty answer is E_BAD_CONTENT): a photo emptied since
 * (a full disk, a tool gone wrong) is fetched again, not reported `exists-locally` with 0 bytes.
 */
describe('export rerun over a file emptied since', () => {
  it('fetches an empty file again instead of reporting it done', async () => {
    const s = await withSandbox();
    const dir = tempDir('export-empty');
    const face = '66dbcf71-dcc3-4aff-a0df-c31df823e289';
    const manifest = path.join(dir, 'export.csv');
    const out = path.join(dir, 'out');
    writeFileSync(manifest, `type,faceId,output\nenrollmentPhoto,${face},face.jpg\n`);
    const base = { command: 'export' as const, manifest, outDir: out, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state') };
    const first = await runJob({ ...base, reportDir: path.join(dir, 'r1') });
    expect(first.exitCode).toBe(0);
    const size = statSync(path.join(out, 'face.jpg')).size;
    expect(size).toBeGreaterThan(0);

    writeFileSync(path.join(out, 'face.jpg'), '');
    const again = await runJob({ ...base, reportDir: path.join(dir, 'r2') });
    const report = readFileSync(path.join(dir, 'r2', 'report.csv'), 'utf8');
    expect(statSync(path.join(out, 'face.jpg')).size, report).toBe(size);
    expect(again.summary.counts.succeeded).toBe(1);
  });
});
