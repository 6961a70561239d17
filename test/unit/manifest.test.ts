import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManifestError, RowInvalidError } from '../../src/errors.ts';
import { toExportItem, safeRelativeOutput } from '../../src/sources/export-items.ts';
import { toImportItem } from '../../src/sources/import-items.ts';
import { hashManifest, readManifest, type ManifestRecord } from '../../src/sources/manifest-reader.ts';
import { tempDir } from '../helpers/fixtures.ts';

const P = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const D = '9b2f1c4e-1111-4a2b-8c3d-0123456789ab';

async function collect(file: string, required: string[]): Promise<ManifestRecord[]> {
  const out: ManifestRecord[] = [];
  for await (const r of readManifest(file, required)) out.push(r);
  return out;
}

function manifest(text: string): string {
  const dir = tempDir();
  const file = path.join(dir, 'm.csv');
  writeFileSync(file, text);
  return file;
}

describe('readManifest', () => {
  it('reads rows with 1-based numbers, tolerates a BOM, quotes and CRLF', async () => {
    const file = manifest('\uFEFFpersonId,file,name,extra\r\na,b,"c, with comma",x\r\n\r\nd,e,"f ""q""",y\r\n');
    const rows = await collect(file, ['personId', 'file', 'name']);
    expect(rows.map((r) => r.row)).toEqual([1, 2]);
    expect(rows[0]!.values).toEqual({ personId: 'a', file: 'b', name: 'c, with comma', extra: 'x' });
    expect(rows[1]!.values.name).toBe('f "q"');
  });

  it('flags a row with the wrong number of cells instead of failing the run', async () => {
    const rows = await collect(manifest('personId,file,name\na,b\n'), ['personId', 'file', 'name']);
    expect(rows[0]!.shapeError).toMatch(/has 2 cells but the header has 3 columns/);
  });

  it('refuses a manifest missing a required column before yielding anything', async () => {
    await expect(collect(manifest('personId,name\na,b\n'), ['personId', 'file', 'name'])).rejects.toThrowError(/missing the required column file/);
  });

  it('refuses a missing, empty or broken manifest with ManifestError', async () => {
    await expect(collect('/no/such.csv', ['x'])).rejects.toThrowError(ManifestError);
    await expect(collect('/no/such.csv', ['x'])).rejects.toThrowError(/no such file/);
    await expect(collect(manifest(''), ['x'])).rejects.toThrowError(/is empty/);
    await expect(collect(manifest('x\n"unterminated\n'), ['x'])).rejects.toThrowError(/not valid CSV/);
    await expect(hashManifest('/no/such.csv')).rejects.toThrowError(ManifestError);
  });
});

describe('import rows', () => {
  function setup() {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'scan.pdf'), 'PDF');
    writeFileSync(path.join(dir, 'empty.pdf'), '');
    return dir;
  }
  const rec = (values: Record<string, string>): ManifestRecord => ({ row: 1, values });

  it('accepts a valid row, resolving the file against the manifest folder', async () => {
    const dir = setup();
    const item = await toImportItem(rec({ personId: P.toUpperCase(), file: 'scan.pdf', name: ' ID card ', description: '', publicId: D }), dir);
    expect(item).toEqual({ personId: P, file: path.join(dir, 'scan.pdf'), name: 'ID card', publicId: D });
  });

  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ['no personId', { personId: '', file: 'scan.pdf', name: 'n' }, /personId is empty/],
    ['bad personId', { personId: 'bob', file: 'scan.pdf', name: 'n' }, /personId "bob" is not a GUID/],
    ['no name', { personId: P, file: 'scan.pdf', name: ' ' }, /name is empty/],
    ['bad publicId', { personId: P, file: 'scan.pdf', name: 'n', publicId: '12' }, /publicId "12" is not a GUID/],
    ['missing file', { personId: P, file: 'nope.pdf', name: 'n' }, /file nope.pdf does not exist/],
    ['empty file', { personId: P, file: 'empty.pdf', name: 'n' }, /is empty \(0 bytes\)/],
    ['folder as file', { personId: P, file: '.', name: 'n' }, /is not a regular file/],
  ];
  for (const [name, values, message] of bad) {
    it(`rejects ${name}`, async () => {
      const dir = setup();
      const err = await toImportItem(rec(values), dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RowInvalidError);
      expect((err as Error).message).toMatch(message);
    });
  }
});

describe('export rows', () => {
  const rec = (values: Record<string, string>): ManifestRecord => ({ row: 1, values });

  it('gives the default output paths of cli.md', () => {
    expect(toExportItem(rec({ type: 'enrollmentPhoto', faceId: P })).output).toBe(`enrollment/${P}.jpg`);
    expect(toExportItem(rec({ type: 'detectionPhoto', faceId: P, detectionId: D })).output).toBe(`detections/${P}/${D}.jpg`);
    const doc = toExportItem(rec({ type: 'document', personId: P, documentId: D }));
    expect(doc.output).toBe(`documents/${P}/${D}`);
    expect(doc.explicitOutput).toBe(false);
    expect(toExportItem(rec({ type: 'document', personId: P, documentId: D, output: 'a/b.pdf' }))).toMatchObject({ output: 'a/b.pdf', explicitOutput: true });
  });

  it('rejects unknown types and missing ids', () => {
    expect(() => toExportItem(rec({ type: 'video' }))).toThrowError(/type "video" is not/);
    expect(() => toExportItem(rec({ type: 'detectionPhoto', faceId: P }))).toThrowError(/detectionId is required/);
    expect(() => toExportItem(rec({ type: 'document', personId: P, documentId: 'x' }))).toThrowError(/documentId "x" is not a GUID/);
  });

  it('never lets an output path leave --out', () => {
    for (const evil of ['../x.jpg', 'a/../../x.jpg', '/etc/passwd', 'C:/x', 'a\\..\\b', 'a/..', '.', 'dir/']) {
      expect(() => safeRelativeOutput(evil), evil).toThrowError(RowInvalidError);
    }
    expect(safeRelativeOutput('a/./b.jpg')).toBe('a/b.jpg');
  });

  it('the download job refuses a link under --out (checked at write time)', async () => {
    const dir = tempDir();
    const outside = tempDir();
    mkdirSync(path.join(dir, 'out'));
    symlinkSync(outside, path.join(dir, 'out', 'escape'));
    const { downloadFile } = await import('../../jobs/download-file.ts');
    const job = { data: { kind: 'download', runId: 'r', row: 1, outDir: path.join(dir, 'out'), item: { type: 'enrollmentPhoto', faceId: P, output: 'escape/x.jpg', explicitOutput: true } } };
    await expect(downloadFile(job as never, {} as never)).rejects.toMatchObject({ code: 'E_OUTSIDE_OUT', message: expect.stringMatching(/escape under --out is a link; idsync does not write through links/) });
  });
});
