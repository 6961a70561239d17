import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const FACE = '5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e';
const DET = '6b2f4d0e-3c5a-4d7b-9f8e-0a1b2c3d4e5f';
const GONE = '00000000-1111-4222-8333-444455556666';

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

describe('idsync export against the sandbox', () => {
  it('downloads photos and documents atomically, rejects unsafe rows, and a rerun fetches nothing', async () => {
    const s = await withSandbox({ prefix: '/identities' });
    const dir = tempDir();
    const importManifest = writeImportManifest(dir, 3);
    const common = { apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state') };
    const imported = await runJob({ command: 'import', manifest: importManifest, reportDir: path.join(dir, 'r-import'), ...common });
    expect(imported.exitCode).toBe(0);
    const docs = parse(readFileSync(path.join(dir, 'r-import', 'report.csv')), { columns: true }) as Array<Record<string, string>>;

    const rows = [
      'type,faceId,detectionId,personId,documentId,output,note',
      `enrollmentPhoto,${FACE},,,,,a`,
      `detectionPhoto,${FACE},${DET},,,,b`,
      ...docs.map((d) => `document,,,${d.personId},${d.documentId},,doc`),
      `document,,,${docs[0]!.personId},${docs[0]!.documentId},named/first.bin,named`,
      `enrollmentPhoto,${GONE},,,,,missing`,
      `enrollmentPhoto,${FACE},,,,../escape.jpg,evil`,
      `selfie,${FACE},,,,,bad type`,
      `detectionPhoto,${FACE},${DET},,,named/first.bin,same output as a row above`,
    ];
    const manifest = path.join(dir, 'export.csv');
    writeFileSync(manifest, `${rows.join('\n')}\n`);
    const out = path.join(dir, 'out');
    const r = await runJob({ command: 'export', manifest, outDir: out, reportDir: path.join(dir, 'r-export'), ...common });
    expect(r.exitCode).toBe(1);
    const report = parse(readFileSync(path.join(dir, 'r-export', 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(report.map((x) => x.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'rejected', 'rejected', 'rejected']);
    expect(report[9]!.error).toBe('output named/first.bin is also the output of row 6; give one of them another output');
    expect(report[0]!.output).toBe(`enrollment/${FACE}.jpg`);
    expect(report[1]!.output).toBe(`detections/${FACE}/${DET}.jpg`);
    expect(report[6]).toMatchObject({ httpStatus: '404', attempts: '1' });
    expect(report[7]!.error).toMatch(/leaves --out/);
    expect(report[8]!.note).toBe('bad type');
    const jpeg = readFileSync(path.join(out, report[0]!.output!));
    expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');
    expect(createHash('sha256').update(jpeg).digest('hex')).toBe(report[0]!.sha256);
    for (let i = 0; i < 3; i++) {
      const original = readFileSync(docs[i]!.file!);
      expect(readFileSync(path.join(out, report[2 + i]!.output!)).equals(original)).toBe(true);
    }
    expect(readFileSync(path.join(out, 'named/first.bin')).equals(readFileSync(docs[0]!.file!))).toBe(true);
    expect(walk(out).filter((f) => f.endsWith('.part') || path.basename(f).startsWith('.'))).toEqual([]);
    expect(existsSync(path.join(dir, 'escape.jpg'))).toBe(false);

    s.resetStats();
    const again = await runJob({ command: 'export', manifest, outDir: out, reportDir: path.join(dir, 'r-export2'), ...common });
    expect(again.summary.counts).toMatchObject({ skipped: 6, failed: 1, rejected: 3 });
    // Only the 404 row is tried again (it had failed); the finished files are not fetched twice.
    expect(s.stats().requests).toBeLessThanOrEqual(2);
    const rerun = parse(readFileSync(path.join(dir, 'r-export2', 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(rerun[0]).toMatchObject({ status: 'skipped', action: 'exists-locally', output: `enrollment/${FACE}.jpg` });
    expect(rerun[0]!.sha256).toBe(report[0]!.sha256);

    // The files are deleted: remembered results never outrank the disk, the rerun fetches them again.
    rmSync(out, { recursive: true, force: true });
    const third = await runJob({ command: 'export', manifest, outDir: out, reportDir: path.join(dir, 'r-export3'), ...common });
    expect(third.summary.counts).toMatchObject({ succeeded: 6, failed: 1, rejected: 3 });
    expect(readFileSync(path.join(out, 'named/first.bin')).equals(readFileSync(docs[0]!.file!))).toBe(true);
  });
});
