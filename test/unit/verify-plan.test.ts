import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { VerifyPlan, VERIFY_STATUSES, type VerifyPlanOptions } from '../../src/commands/verify/verify-plan.ts';
import { ExitCode, exitCodeForOutcome } from '../../src/engine/outcome.ts';
import { ManifestError, UsageError } from '../../src/errors.ts';
import { emptyCounts } from '../../src/report/row-result.ts';
import { summaryLines } from '../../src/report/summary-lines.ts';
import type { PlannedRow } from '../../jobs/job-kind.ts';
import type { VerifyPayload } from '../../jobs/verify.ts';
import { tempDir } from '../helpers/fixtures.ts';

const P = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const D = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const F = '5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e';
const DET = '6b2f4d0e-3c5a-4d7b-9f8e-0a1b2c3d4e5f';
const SHA = 'ab'.repeat(32);
const T = Date.UTC(2026, 10, 25, 12, 0, 0);

function open(input: string, extra: Partial<VerifyPlanOptions> = {}): Promise<VerifyPlan> {
  return VerifyPlan.open({ input, remote: false, apiUrl: () => 'https://api.example/identities', startedAt: T, ...extra });
}

async function planned(plan: VerifyPlan): Promise<PlannedRow[]> {
  await plan.check();
  const out: PlannedRow[] = [];
  for await (const r of plan.rows()) out.push(r);
  return out;
}

const payload = (r: PlannedRow) => r.job?.payload as VerifyPayload;

describe('VerifyPlan', () => {
  it('an import manifest: each row hashes its file and asks the server, under its publicId or the derived one', async () => {
    const dir = tempDir('verify-plan');
    const manifest = path.join(dir, 'm.csv');
    writeFileSync(manifest, `PersonID,File,name,publicId,note\n${P},a.pdf,A,,x\n${P},sub/b.pdf,B,${D.toUpperCase()},y\nnope,c.pdf,C,,z\n${P},,D,,w\n${P},d.pdf,E,not-a-guid,v\n${P},e.pdf\n`);
    const plan = await open(manifest);
    expect(plan.kind).toBe('manifest');
    expect(plan.runId).toMatch(/^verify-[0-9a-f]{16}-20261125T120000\.000Z$/);
    expect(plan.report.statuses).toEqual(VERIFY_STATUSES);
    expect(plan.report.knownColumns).toContain('publicId');
    const rows = await planned(plan);
    expect(payload(rows[0]!)).toEqual({ file: path.join(dir, 'a.pdf'), server: { type: 'document', personId: P }, show: { personId: P, file: path.join(dir, 'a.pdf') } });
    expect(payload(rows[1]!).server).toEqual({ type: 'document', personId: P, documentId: D });
    expect(rows.slice(2).map((r) => [r.result?.status, r.result?.error])).toEqual([
      ['rejected', 'personId "nope" is not a GUID'],
      ['rejected', 'file is empty'],
      ['rejected', 'publicId "not-a-guid" is not a GUID'],
      ['rejected', 'row has 2 cells but the header has 5 columns'],
    ]);
    // failed.csv gets the manifest's rows with absolute files.
    expect(plan.report.failedRow!({ file: 'a.pdf' }).file).toBe(path.join(dir, 'a.pdf'));
  });

  it('is a new run at every start (what a verify says holds for the moment it looked)', async () => {
    const dir = tempDir('verify-plan');
    const manifest = path.join(dir, 'm.csv');
    writeFileSync(manifest, `personId,file\n${P},a.pdf\n`);
    const a = await open(manifest);
    const b = await open(manifest, { startedAt: T + 1 });
    const c = await open(manifest, { remote: true });
    expect(a.resumable).toBe(false);
    expect(b.runId).not.toBe(a.runId);
    expect(b.runId.slice(0, 23)).toBe(a.runId.slice(0, 23));
    expect(c.runId.slice(0, 23)).not.toBe(a.runId.slice(0, 23));
  });

  it("a report: an import's rows ask the server for the recorded content; an export's need --out and check the file", async () => {
    const dir = tempDir('verify-plan');
    const report = path.join(dir, 'report.csv');
    const header = 'row,status,action,personId,faceId,detectionId,documentId,file,output,bytes,sha256,attempts,httpStatus,error,batch';
    writeFileSync(
      report,
      [
        header,
        `1,succeeded,uploaded,${P},,,${D},/scans/a.pdf,,10,${SHA},1,,,B1`,
        `2,failed,upload,${P},,,,/scans/b.pdf,,,,5,503,server,B1`,
        `3,skipped,dry-run: would upload,${P},,,,/scans/c.pdf,,,,,,,B1`,
      ].join('\n'),
    );
    const imp = await open(report);
    expect(imp.kind).toBe('report');
    expect(imp.filesDir).toBeUndefined();
    const rows = await planned(imp);
    expect(payload(rows[0]!)).toEqual({ sha256: SHA, server: { type: 'document', personId: P, documentId: D }, show: { personId: P, documentId: D, file: '/scans/a.pdf' } });
    expect(rows[1]!.result).toMatchObject({ status: 'rejected', error: 'nothing to verify: the run that wrote this report did not do this row (failed)' });
    expect(rows[2]!.result).toMatchObject({ status: 'rejected', error: 'the report records no sha256 for this row' });

    const exportReport = path.join(dir, 'export-report.csv');
    writeFileSync(
      exportReport,
      [
        header,
        `1,succeeded,downloaded,,${F},,,,enrollment/${F}.jpg,3,${SHA},1,,,`,
        `2,succeeded,downloaded,,${F},${DET},,,detections/${F}/${DET}.jpg,3,${SHA},1,,,`,
        `3,skipped,exists-locally,${P},,,${D},,documents/${P}/${D}.pdf,3,${SHA},1,,,`,
        `4,succeeded,downloaded,,,,,,../escape.jpg,3,${SHA},1,,,`,
      ].join('\n'),
    );
    await expect((await open(exportReport)).check()).rejects.toBeInstanceOf(UsageError);
    const out = path.join(dir, 'out');
    const local = await planned(await open(exportReport, { outDir: out }));
    expect(payload(local[0]!)).toEqual({ file: path.join(out, `enrollment/${F}.jpg`), sha256: SHA, show: { output: `enrollment/${F}.jpg`, faceId: F } });
    expect(local[3]!.result).toMatchObject({ status: 'rejected', error: 'output "../escape.jpg" leaves --out (..)' });
    const remote = await planned(await open(exportReport, { outDir: out, remote: true }));
    expect(remote.slice(0, 3).map((r) => payload(r).server)).toEqual([
      { type: 'enrollmentPhoto', faceId: F },
      { type: 'detectionPhoto', faceId: F, detectionId: DET },
      { type: 'document', personId: P, documentId: D },
    ]);
  });

  it('an archive folder: its index.csv, the last line of an enrollment path counts, --remote picks how to ask', async () => {
    const dir = tempDir('verify-plan');
    const archive = path.join(dir, 'archive');
    mkdirSync(archive);
    await expect(open(archive)).rejects.toBeInstanceOf(ManifestError);
    const when = '2026-11-25T11:30:00.123Z';
    writeFileSync(
      path.join(archive, 'index.csv'),
      [
        'path,kind,personId,faceId,detectionTime,detector,bytes,sha256,archivedAt',
        `enrollment/${F}.jpg,enrollment,,${F},,,3,${SHA},x`,
        `detections/${P}/2026-11-25/a_0.jpg,detection,${P},,${when},cam,3,${SHA},x`,
        `enrollment/${F}.20261125T120000Z.jpg,enrollment-previous,,${F},,,3,${SHA},x`,
        `enrollment/${F}.jpg,enrollment,,${F},,,3,${'cd'.repeat(32)},x`,
        `detections/${P}/unknown-date/x_cam.jpg,detection,${P},,,cam,3,${SHA},x`,
        `/etc/passwd,detection,${P},,,cam,3,${SHA},x`,
      ].join('\n'),
    );
    const plan = await open(archive, { remote: true });
    expect(plan.kind).toBe('index');
    expect(plan.filesDir).toBe(archive);
    const rows = await planned(plan);
    expect(rows[0]!.result).toMatchObject({ status: 'skipped', action: 'superseded by line 4', output: `enrollment/${F}.jpg` });
    expect(payload(rows[1]!)).toMatchObject({ file: path.join(archive, `detections/${P}/2026-11-25/a_0.jpg`), server: { type: 'listedDetection', personId: P, timeMs: Date.parse(when) } });
    expect(payload(rows[2]!)).toMatchObject({ localOnly: 'an earlier version: the server keeps only the current photo' });
    expect(payload(rows[2]!).server).toBeUndefined();
    expect(payload(rows[3]!)).toMatchObject({ sha256: 'cd'.repeat(32), server: { type: 'enrollmentPhoto', faceId: F } });
    expect(payload(rows[4]!)).toMatchObject({ localOnly: 'no person or time to look the detection up by' });
    expect(rows[5]!.result?.status).toBe('rejected');
    // An index given as a file is read the same; its paths are relative to its folder unless --out says otherwise.
    const elsewhere = await open(path.join(archive, 'index.csv'), { outDir: path.join(dir, 'moved') });
    expect(payload((await planned(elsewhere))[1]!).file).toBe(path.join(dir, 'moved', `detections/${P}/2026-11-25/a_0.jpg`));
  });
});

describe("verify's ending", () => {
  it('exits 0 only when every row is verified (skipped lines count as done), and the summary shows its statuses', () => {
    const all = { ...emptyCounts(VERIFY_STATUSES), verified: 3, skipped: 1 };
    expect(exitCodeForOutcome({ ending: 'done', counts: all })).toBe(ExitCode.Ok);
    expect(exitCodeForOutcome({ ending: 'done', counts: { ...all, mismatch: 1 } })).toBe(ExitCode.RowsFailed);
    expect(exitCodeForOutcome({ ending: 'done', counts: { ...all, missing: 1 } })).toBe(ExitCode.RowsFailed);
    expect(exitCodeForOutcome({ ending: 'interrupted', counts: all })).toBe(ExitCode.Interrupted);
    const lines = summaryLines('verify', { runId: 'verify-x', rows: 6, counts: { ...all, mismatch: 1, missing: 1 }, bytes: 0, reportDir: '/r' }, { statuses: VERIFY_STATUSES, retry: 'again' });
    expect(lines).toEqual(['verify verify-x: 6 rows: 3 verified, 1 mismatch, 1 missing, 0 failed, 0 rejected, 1 skipped; 0 B', 'report: /r/report.csv', 'again']);
    // Every other command's line is as it was.
    expect(summaryLines('import', { runId: 'i', rows: 1, counts: emptyCounts(), bytes: 0, reportDir: '/r' })[0]).toBe('import i: 1 rows: 0 succeeded, 0 skipped, 0 failed, 0 rejected; 0 B');
  });
});
