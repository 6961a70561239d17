import { appendFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { runVerify } from '../../src/commands/verify/run-verify.ts';
import { runArchive } from '../../src/commands/archive/run-archive.ts';
import { systemClock, type Clock } from '../../src/pacing/clock.ts';
import { PERMISSIONS, type Sandbox } from '../../src/sandbox/index.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

type Box = Sandbox & { password: string };

function readCsv(file: string): Array<Record<string, string>> {
  return parse(readFileSync(file), { columns: true }) as Array<Record<string, string>>;
}

/** `idsync verify` in-process against the sandbox and the suite's Redis. */
async function verifyRun(s: Box, dir: string, input: string, o: { report: string; outDir?: string; remote?: boolean; username?: string; password?: string; clock?: Clock }) {
  const lines: string[] = [];
  const config = loadConfig({
    env: {
      IDSYNC_API_URL: s.url,
      IDSYNC_USERNAME: o.username ?? 'migrator',
      IDSYNC_PASSWORD: o.password ?? s.password,
      REDIS_URL: inject('redisUrl'),
      IDSYNC_REDIS_PREFIX: freshKeyPrefix(),
      IDSYNC_STATE_DIR: path.join(dir, 'state-verify'),
      IDSYNC_REPORT_DIR: path.join(dir, o.report),
    },
    flags: { concurrency: 4, attempts: 2 },
  });
  const result = await runVerify({
    input,
    ...(o.outDir ? { outDir: o.outDir } : {}),
    remote: o.remote === true,
    config,
    log: silentLogger(),
    signal: new AbortController().signal,
    out: (l) => lines.push(l),
    ...(o.clock ? { clock: o.clock } : {}),
    tty: false,
    pollMs: 50,
  });
  return { ...result, lines, rows: readCsv(path.join(dir, o.report, 'report.csv')) };
}

/** The sandbox's admin calls that alter what it stores. */
async function replaceOnServer(s: Box, personId: string, documentId: string, bytes: string): Promise<number> {
  return (await fetch(`${s.origin}/_admin/documents/${personId}/${documentId}`, { method: 'PUT', body: bytes })).status;
}
async function deleteOnServer(s: Box, personId: string, documentId: string): Promise<number> {
  return (await fetch(`${s.origin}/_admin/documents/${personId}/${documentId}`, { method: 'DELETE' })).status;
}

/** 20 documents imported, then one changed and one deleted on the server. */
async function importedThenAltered(s: Box, dir: string) {
  const manifest = writeImportManifest(dir, 20);
  const imported = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'r-import') });
  expect(imported.exitCode).toBe(0);
  const report = readCsv(path.join(dir, 'r-import', 'report.csv'));
  const changed = report[3]!;
  const deleted = report[11]!;
  expect(await replaceOnServer(s, changed.personId!, changed.documentId!, 'not what was uploaded')).toBe(200);
  expect(await deleteOnServer(s, deleted.personId!, deleted.documentId!)).toBe(204);
  return { manifest, importReport: path.join(dir, 'r-import', 'report.csv'), changed, deleted };
}

describe('idsync verify against the sandbox', () => {
  it('an import manifest: 18 verified, the document changed on the server a mismatch, the deleted one missing; exit 1', async () => {
    const s = await withSandbox({ prefix: '/identities' });
    const dir = tempDir('verify');
    const { manifest, changed, deleted } = await importedThenAltered(s, dir);
    s.resetStats();

    const r = await verifyRun(s, dir, manifest, { report: 'r-verify' });
    expect(r.exitCode).toBe(1);
    expect(r.ending).toBe('done');
    expect(r.summary.counts).toMatchObject({ verified: 18, mismatch: 1, missing: 1, failed: 0, rejected: 0 });
    expect(r.lines[0]).toMatch(/^verify verify-[0-9a-f]{16}-\S+: 20 rows: 18 verified, 1 mismatch, 1 missing, 0 failed, 0 rejected;/);
    expect(r.lines.join('\n')).toContain('idsync verify ');
    // One login, one GET per document: nothing uploaded.
    expect(s.stats().uploadRequests).toBe(0);
    expect(s.stats().requests).toBe(21);

    const byDoc = new Map(r.rows.map((row) => [row.documentId, row]));
    expect(byDoc.get(changed.documentId)).toMatchObject({ status: 'mismatch', action: 'local+server', sha256: changed.sha256 });
    expect(byDoc.get(changed.documentId)!.error).toContain("the server's copy differs");
    expect(byDoc.get(deleted.documentId)).toMatchObject({ status: 'missing', error: 'the server has no such copy (404)' });
    expect(r.rows.filter((row) => row.status === 'verified')).toHaveLength(18);
    // The manifest's own columns come through, and failed.csv holds the two rows not verified, in the manifest's format.
    expect(r.rows[0]!.batch).toBe('B0');
    const failed = readCsv(path.join(dir, 'r-verify', 'failed.csv'));
    expect(failed.map((f) => path.basename(f.file!)).sort()).toEqual([path.basename(changed.file!), path.basename(deleted.file!)].sort());
    expect(path.isAbsolute(failed[0]!.file!)).toBe(true);

    // Nothing is remembered between verifies: the same command looks again (a new run) and finds the same.
    const again = await verifyRun(s, dir, manifest, { report: 'r-verify-2' });
    expect(again.summary.runId).not.toBe(r.summary.runId);
    expect(again.summary.counts).toMatchObject({ verified: 18, mismatch: 1, missing: 1 });

    // A local file gone is `missing` too (its content cannot be known, so the server is not asked).
    rmSync(path.join(dir, 'files', 'doc-0.bin'));
    const gone = await verifyRun(s, dir, manifest, { report: 'r-verify-3' });
    expect(gone.summary.counts).toMatchObject({ verified: 17, mismatch: 1, missing: 2 });
    expect(gone.rows[0]).toMatchObject({ status: 'missing', action: 'local+server' });
    expect(gone.rows[0]!.error).toContain('the local file is gone');
  });

  it("an import's report.csv: the same finding, from the report's documentId and sha256", async () => {
    const s = await withSandbox();
    const dir = tempDir('verify');
    const { importReport, changed, deleted } = await importedThenAltered(s, dir);
    // The local files do not matter here: the report records what was uploaded.
    rmSync(path.join(dir, 'files'), { recursive: true });

    const r = await verifyRun(s, dir, importReport, { report: 'r-verify' });
    expect(r.exitCode).toBe(1);
    expect(r.summary.counts).toMatchObject({ verified: 18, mismatch: 1, missing: 1, failed: 0, rejected: 0 });
    const byDoc = new Map(r.rows.map((row) => [row.documentId, row]));
    expect(byDoc.get(changed.documentId)).toMatchObject({ status: 'mismatch', action: 'server' });
    expect(byDoc.get(deleted.documentId)).toMatchObject({ status: 'missing', action: 'server' });

    // Its failed.csv is a report of the two rows: verify takes it back (here: both still wrong).
    const retry = await verifyRun(s, dir, path.join(dir, 'r-verify', 'failed.csv'), { report: 'r-retry' });
    expect(retry.summary.rows).toBe(2);
    expect(retry.summary.counts).toMatchObject({ verified: 0, mismatch: 1, missing: 1 });
  });

  it('every row verified exits 0; rows it cannot check are failed (403) or rejected (a bad line)', async () => {
    const s = await withSandbox({ users: [{ username: 'migrator', password: 'pw-all-rights', permissions: [...PERMISSIONS] }, { username: 'writer', password: 'pw-no-read', permissions: ['Add Identity Files'] }] });
    const box = Object.assign(s, { password: 'pw-all-rights' });
    const dir = tempDir('verify');
    const manifest = writeImportManifest(dir, 4);
    const imported = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: 'pw-all-rights', stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'r-import') });
    expect(imported.exitCode).toBe(0);

    const ok = await verifyRun(box, dir, manifest, { report: 'r-ok' });
    expect(ok.exitCode).toBe(0);
    expect(ok.summary.counts).toMatchObject({ verified: 4, mismatch: 0, missing: 0, failed: 0, rejected: 0 });
    expect(ok.lines.join('\n')).not.toContain('again');

    const denied = await verifyRun(box, dir, manifest, { report: 'r-denied', username: 'writer', password: 'pw-no-read' });
    expect(denied.exitCode).toBe(1);
    expect(denied.summary.counts).toMatchObject({ verified: 0, failed: 4 });
    expect(denied.rows[0]).toMatchObject({ status: 'failed', action: 'verify', httpStatus: '403' });

    appendFileSync(manifest, 'not-a-guid,files/doc-0.bin,Bad,,,B9\n');
    const bad = await verifyRun(box, dir, manifest, { report: 'r-bad' });
    expect(bad.exitCode).toBe(1);
    expect(bad.summary.counts).toMatchObject({ verified: 4, rejected: 1 });
    expect(bad.rows[4]).toMatchObject({ status: 'rejected', error: 'personId "not-a-guid" is not a GUID' });
  });

  it('an export folder: a file altered on disk is a mismatch; --remote also compares the server copies', async () => {
    const s = await withSandbox({ prefix: '/identities' });
    const dir = tempDir('verify');
    const manifest = writeImportManifest(dir, 3);
    const common = { apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state') };
    expect((await runJob({ command: 'import', manifest, reportDir: path.join(dir, 'r-import'), ...common })).exitCode).toBe(0);
    const docs = readCsv(path.join(dir, 'r-import', 'report.csv'));
    const FACE = '5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e';
    const DET = '6b2f4d0e-3c5a-4d7b-9f8e-0a1b2c3d4e5f';
    const exportManifest = path.join(dir, 'export.csv');
    writeFileSync(exportManifest, ['type,faceId,detectionId,personId,documentId', `enrollmentPhoto,${FACE},,,`, `detectionPhoto,${FACE},${DET},,`, ...docs.map((d) => `document,,,${d.personId},${d.documentId}`)].join('\n'));
    const out = path.join(dir, 'out');
    const exported = await runJob({ command: 'export', manifest: exportManifest, outDir: out, reportDir: path.join(dir, 'r-export'), ...common });
    expect(exported.exitCode).toBe(0);
    const exportReport = path.join(dir, 'r-export', 'report.csv');

    const clean = await verifyRun(s, dir, exportReport, { report: 'r-clean', outDir: out });
    expect(clean.exitCode).toBe(0);
    expect(clean.summary.counts).toMatchObject({ verified: 5, mismatch: 0 });
    expect(clean.rows.every((row) => row.action === 'local')).toBe(true);

    const rows = readCsv(exportReport);
    writeFileSync(path.join(out, rows[2]!.output!), 'altered on disk');
    const altered = await verifyRun(s, dir, exportReport, { report: 'r-altered', outDir: out });
    expect(altered.exitCode).toBe(1);
    expect(altered.summary.counts).toMatchObject({ verified: 4, mismatch: 1, missing: 0 });
    expect(altered.rows[2]).toMatchObject({ status: 'mismatch', output: rows[2]!.output, sha256: rows[2]!.sha256 });
    expect(altered.rows[2]!.error).toContain('the file on disk differs');
    expect(altered.lines.join('\n')).toContain(`--out ${out}`);

    // --remote: the files on disk and the server's copies; a document changed on the server since.
    writeFileSync(path.join(out, rows[2]!.output!), readFileSync(docs[0]!.file!));
    expect(await replaceOnServer(s, docs[1]!.personId!, docs[1]!.documentId!, 'changed on the server')).toBe(200);
    const remote = await verifyRun(s, dir, exportReport, { report: 'r-remote', outDir: out, remote: true });
    expect(remote.summary.counts).toMatchObject({ verified: 4, mismatch: 1, missing: 0 });
    expect(remote.rows[3]).toMatchObject({ status: 'mismatch', action: 'local+server', documentId: docs[1]!.documentId });
    expect(remote.rows[0]).toMatchObject({ status: 'verified', action: 'local+server', faceId: FACE });
    expect(remote.rows[1]).toMatchObject({ status: 'verified', action: 'local+server', detectionId: DET });
  });

  it("an export's report without --out cannot start (exit 2); a folder without index.csv neither", async () => {
    const s = await withSandbox();
    const dir = tempDir('verify');
    const report = path.join(dir, 'report.csv');
    writeFileSync(report, `row,status,action,personId,faceId,detectionId,documentId,file,output,bytes,sha256\n1,succeeded,downloaded,,5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e,,,,enrollment/x.jpg,3,${'a'.repeat(64)}\n`);
    const noOut = await verifyRun(s, dir, report, { report: 'r' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(noOut).toBeInstanceOf(Error);
    expect(String((noOut as Error).message)).toContain('--out');
    expect(exitCodeForError(noOut)).toBe(2);

    const notArchive = await verifyRun(s, dir, dir, { report: 'r' }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(String((notArchive as Error).message)).toContain('without index.csv');
    expect(exitCodeForError(notArchive)).toBe(2);
  });

  it('an archive folder: index.csv read, a superseded line skipped, a file altered or deleted found; --remote asks the server', async () => {
    const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
    let now = T0;
    const clock: Clock = { now: () => now, sleep: systemClock.sleep };
    const s = await withSandbox({ now: clock.now });
    const dir = tempDir('verify');
    const FACE = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
    const PERSON = 'a8098c1a-f86e-11da-bd1a-00112444be1e';
    writeFileSync(path.join(dir, 'faces.csv'), `faceId\n${FACE}\n`);
    writeFileSync(path.join(dir, 'persons.csv'), `personId\n${PERSON}\n`);
    const out = path.join(dir, 'archive');
    const archive = async (report: string) => {
      const config = loadConfig({
        env: { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: freshKeyPrefix(), IDSYNC_STATE_DIR: path.join(dir, 'state'), IDSYNC_REPORT_DIR: path.join(dir, report) },
        flags: { concurrency: 4, attempts: 2 },
      });
      const r = await runArchive({ faces: path.join(dir, 'faces.csv'), persons: path.join(dir, 'persons.csv'), outDir: out, since: new Date(T0 - 3600_000).toISOString(), config, log: silentLogger(), signal: new AbortController().signal, out: () => undefined, clock, pollMs: 50 });
      expect(r.exitCode).toBe(0);
    };
    await archive('r-a1');
    s.bumpEnrollmentVersion(FACE);
    now = T0 + 60_000;
    await archive('r-a2');
    const index = readCsv(path.join(out, 'index.csv'));
    expect(index.filter((l) => l.kind === 'enrollment')).toHaveLength(2);
    expect(index.filter((l) => l.kind === 'enrollment-previous')).toHaveLength(1);
    const detections = index.filter((l) => l.kind === 'detection');
    expect(detections.length).toBeGreaterThanOrEqual(2);

    const clean = await verifyRun(s, dir, out, { report: 'r-clean', clock });
    expect(clean.exitCode).toBe(0);
    expect(clean.summary.counts).toMatchObject({ verified: index.length - 1, skipped: 1, mismatch: 0, missing: 0 });
    const superseded = clean.rows.find((row) => row.status === 'skipped')!;
    expect(superseded.output).toBe(`enrollment/${FACE}.jpg`);
    expect(superseded.action).toMatch(/^superseded by line \d+$/);
    expect(Number(superseded.action!.split(' ').pop())).toBeGreaterThan(Number(superseded.row));
    expect(clean.lines[0]).toMatch(/verified, 0 mismatch, 0 missing, 0 failed, 0 rejected, 1 skipped;/);

    // --remote: the photos are asked for too (detections by person and time); all still the same.
    const remote = await verifyRun(s, dir, out, { report: 'r-remote', remote: true, clock });
    expect(remote.exitCode).toBe(0);
    const previous = remote.rows.find((row) => row.output!.includes(`${FACE}.2026`))!;
    expect(previous).toMatchObject({ status: 'verified', action: 'local (an earlier version: the server keeps only the current photo)' });
    expect(remote.rows.filter((row) => row.action === 'local+server')).toHaveLength(index.length - 2);

    const [altered, deleted] = [detections[0]!, detections[1]!];
    writeFileSync(path.join(out, altered.path!), 'altered');
    rmSync(path.join(out, deleted.path!));
    s.bumpEnrollmentVersion(FACE);
    const broken = await verifyRun(s, dir, path.join(out, 'index.csv'), { report: 'r-broken', remote: true, clock });
    expect(broken.exitCode).toBe(1);
    // The file altered on disk, and the current enrollment photo, which the server changed since.
    expect(broken.summary.counts).toMatchObject({ mismatch: 2, missing: 1 });
    const byPath = new Map(broken.rows.map((row) => [row.output, row]));
    expect(byPath.get(altered.path)).toMatchObject({ status: 'mismatch', action: 'local+server' });
    expect(byPath.get(deleted.path)!.status).toBe('missing');
    expect(byPath.get(`enrollment/${FACE}.jpg`)).toMatchObject({ status: 'mismatch' });
    expect(byPath.get(`enrollment/${FACE}.jpg`)!.error).toContain("the server's copy differs");
  });
});
