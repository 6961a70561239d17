import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ManifestError, RowInvalidError } from '../../src/errors.ts';
import { toExportItem, safeRelativeOutput } from '../../src/sources/export-items.ts';
import { toImportItem } from '../../src/sources/import-items.ts';
import { createHash } from 'node:crypto';
import { hashManifest, readManifest, type ManifestHeader, type ManifestReadOptions, type ManifestRecord } from '../../src/sources/manifest-reader.ts';
import { ManifestTextDecoder } from '../../src/sources/manifest-text.ts';
import { tempDir } from '../helpers/fixtures.ts';

const P = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const D = '9b2f1c4e-1111-4a2b-8c3d-0123456789ab';

async function collect(file: string, required: string[], options?: ManifestReadOptions): Promise<ManifestRecord[]> {
  const out: ManifestRecord[] = [];
  for await (const r of readManifest(file, required, options)) out.push(r);
  return out;
}

function manifest(text: string | Buffer): string {
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

const IMPORT = ['personId', 'file', 'name'];
const IMPORT_KNOWN = ['personId', 'file', 'name', 'description', 'publicId'];

async function headerOf(file: string, options: ManifestReadOptions = {}): Promise<ManifestHeader | undefined> {
  let header: ManifestHeader | undefined;
  for await (const _ of readManifest(file, IMPORT, { ...options, onHeader: (h) => (header = h) })) break;
  return header;
}

describe('manifests as people write them (#17.4)', () => {
  it('matches header names ignoring case and surrounding spaces; other columns keep their text', async () => {
    const file = manifest(' PersonID ,FILE, Name ,Description, Batch Nr \nP,a.pdf,A,d,7\n');
    const rows = await collect(file, IMPORT, { known: IMPORT_KNOWN });
    expect(rows[0]!.values).toEqual({ personId: 'P', file: 'a.pdf', name: 'A', description: 'd', 'Batch Nr': '7' });
    expect(await headerOf(file, { known: IMPORT_KNOWN })).toEqual({
      columns: ['personId', 'file', 'name', 'description', 'Batch Nr'],
      labels: [' PersonID ', 'FILE', ' Name ', 'Description', ' Batch Nr '],
      delimiter: ',',
    });
  });

  it('refuses two columns that fold to the same name, naming both', async () => {
    await expect(collect(manifest('personId,PersonID ,file,name\n'), IMPORT)).rejects.toThrowError(/column "personId" twice \("personId" and "PersonID "/);
    await expect(collect(manifest('personId,file,name,Notes,notes\n'), IMPORT)).rejects.toThrowError(ManifestError);
  });

  it('reads ;-separated manifests, with --delimiter or detected from a header without commas', async () => {
    const file = manifest('PersonID;File;Name;Description\nP;a.pdf;Smith, John;1,5 cm\n');
    for (const options of [{ delimiter: ';' }, {}]) {
      const rows = await collect(file, IMPORT, options);
      expect(rows[0]!.values).toEqual({ personId: 'P', file: 'a.pdf', name: 'Smith, John', Description: '1,5 cm' });
      expect(rows[0]!.shapeError).toBeUndefined();
    }
    expect((await headerOf(file))!.delimiter).toBe(';');
  });

  it('reads tab-separated manifests, detected or with --delimiter tab', async () => {
    const file = manifest('personId\tfile\tname\nP\ta.pdf\tSmith; John, Jr\n');
    for (const options of [{ delimiter: '\t' }, {}]) {
      expect((await collect(file, IMPORT, options))[0]!.values.name).toBe('Smith; John, Jr');
    }
  });

  it('a header with a comma keeps the comma; a header in one cell says which --delimiter to pass', async () => {
    expect((await headerOf(manifest('personId,file,name,x;y\n')))!.delimiter).toBe(',');
    await expect(collect(manifest('personId;file;name\n'), IMPORT, { delimiter: ',' })).rejects.toThrowError(/separated by ";", not ",": pass --delimiter ';'/);
  });

  it('decodes a latin1 or cp1252 manifest with --encoding', async () => {
    const latin1 = manifest(Buffer.from('personId,file,name\nP,a.pdf,José Müller\n', 'latin1'));
    expect((await collect(latin1, IMPORT, { encoding: 'latin1' }))[0]!.values.name).toBe('José Müller');
    // cp1252 puts letters where latin1 has control codes: 0x80 is the euro sign, 0x9a š.
    const cp1252 = manifest(Buffer.concat([Buffer.from('personId,file,name\nP,a.pdf,Jos\xe9 M\xfcller \x80 \x9a\n', 'latin1')]));
    expect((await collect(cp1252, IMPORT, { encoding: 'cp1252' }))[0]!.values.name).toBe('José Müller € š');
    // UTF-16 with its BOM (Excel's "Unicode text"), tab-separated.
    const utf16 = manifest(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('personId\tfile\tname\r\nP\ta.pdf\tJosé Müller\r\n', 'utf16le')]));
    expect((await collect(utf16, IMPORT, { encoding: 'utf-16le' }))[0]!.values).toEqual({ personId: 'P', file: 'a.pdf', name: 'José Müller' });
    await expect(collect(utf16, IMPORT)).rejects.toThrowError(/is UTF-16 .*pass --encoding utf-16le/);
  });

  it('stops at invalid UTF-8 without --encoding, naming the line and the fix; the hash pass finds it first', async () => {
    const file = manifest(Buffer.concat([Buffer.from('personId,file,name\nP,a.pdf,Ann\n'), Buffer.from('P,b.pdf,José Müller\n', 'latin1'), Buffer.from('P,c.pdf,Bo\n')]));
    const err = await collect(file, IMPORT).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as Error).message).toMatch(/is not valid UTF-8: line 3 has byte 0xe9/);
    expect((err as Error).message).toMatch(/--encoding latin1 \(or cp1252/);
    await expect(hashManifest(file, {})).rejects.toThrowError(/line 3 has byte 0xe9/);
    // The hash stays one of the bytes, whatever they mean.
    const bytes = readFileSync(file);
    expect(await hashManifest(file)).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(await hashManifest(file, { encoding: 'latin1' })).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  it('never yields a row whose text became U+FFFD', async () => {
    const rows: ManifestRecord[] = [];
    const file = manifest(Buffer.concat([Buffer.from('personId,file,name\nP,a.pdf,Ann\nP,b.pdf,Jos'), Buffer.from([0xe9]), Buffer.from('\n')]));
    const err = await (async () => {
      for await (const r of readManifest(file, IMPORT)) rows.push(r);
    })().catch((e: unknown) => e);
    expect((err as Error).message).toMatch(/line 3 has byte 0xe9/);
    // (Decoding runs ahead of the CSV parser: here the whole file is one chunk, so no row came.)
    expect(rows.some((r) => r.values.name!.startsWith('Jos'))).toBe(false);
    // A U+FFFD already in the file (mangled by an earlier conversion) stops it too.
    await expect(collect(manifest('personId,file,name\nP,a.pdf,Jos\uFFFD\n'), IMPORT)).rejects.toThrowError(/line 2 holds the character U\+FFFD/);
    // A byte the named encoding does not define (0x81 in cp1252) as well.
    await expect(collect(manifest(Buffer.from('personId,file,name\nP,a.pdf,x\x81\n', 'latin1')), IMPORT, { encoding: 'cp1252' })).rejects.toThrowError(/line 2 has a byte that is not a character in cp1252/);
    // A file that ends inside a character.
    await expect(collect(manifest(Buffer.concat([Buffer.from('personId,file,name\nP,a.pdf,x'), Buffer.from([0xe2, 0x82])])), IMPORT)).rejects.toThrowError(/line 2 has byte 0xe2 \(an unfinished character at the end\)/);
  });

  it('decodes characters split across chunks, and counts lines across them', async () => {
    // '€' is 3 bytes: chunk boundaries (64 KiB streamed, 256 KiB hashed) fall inside some of them.
    const lines = ['personId,file,name'];
    for (let i = 0; i < 20_000; i++) lines.push(`P,f${i}.pdf,€uro ${i} Müller`);
    const good = Buffer.from(`${lines.join('\n')}\n`);
    const rows = await collect(manifest(good), IMPORT);
    expect(rows).toHaveLength(20_000);
    expect(rows[19_999]!.values.name).toBe('€uro 19999 Müller');
    const bad = Buffer.concat([good, Buffer.from('P,x.pdf,Ren'), Buffer.from([0xe9]), Buffer.from('\n')]);
    await expect(collect(manifest(bad), IMPORT)).rejects.toThrowError(/line 20002 has byte 0xe9/);
    await expect(hashManifest(manifest(bad), {})).rejects.toThrowError(/line 20002 has byte 0xe9/);

    // Byte by byte through the decoder: the same text comes out.
    const decoder = new ManifestTextDecoder('m.csv');
    const sample = Buffer.from('a,b\n€,ü,𝄞,José\n');
    const out: Buffer[] = [];
    for (let i = 0; i < sample.length; i++) out.push(Buffer.from(decoder.write(sample.subarray(i, i + 1))));
    out.push(decoder.end());
    expect(Buffer.concat(out).toString('utf8')).toBe(sample.toString('utf8'));
  });

  it('keeps the raw text of a row that does not fit the header (#15.8)', async () => {
    const file = manifest('personId,file,name,description\r\nP,a.txt,"Smith, John",Passport front\r\n\r\nP,a.txt,Smith, John,Passport front\r\nP;b.txt\n');
    const rows = await collect(file, IMPORT);
    expect(rows[0]!.raw).toBeUndefined();
    expect(rows[1]!.shapeError).toMatch(/has 5 cells but the header has 4 columns/);
    expect(rows[1]!.raw).toBe('P,a.txt,Smith, John,Passport front');
    expect(rows[2]!.raw).toBe('P;b.txt');
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
    ['Windows path', { personId: P, file: 'C:\\scans\\a.pdf', name: 'n' }, /file C:\\scans\\a.pdf does not exist \(Windows path\? use \/ between folders, or run idsync where the files are\)/],
    ['relative Windows path', { personId: P, file: 'scans\\a.pdf', name: 'n' }, /does not exist \(Windows path\?/],
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

  it('gives the default output paths the README names', () => {
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
    const { download } = await import('../../jobs/download.ts');
    const job = { runId: 'r', row: 1, payload: { outDir: path.join(dir, 'out'), item: { type: 'enrollmentPhoto', faceId: P, output: 'escape/x.jpg', explicitOutput: true } } };
    await expect(download.run(job as never, {} as never)).rejects.toMatchObject({ code: 'E_OUTSIDE_OUT', message: expect.stringMatching(/escape under --out is a link; idsync does not write through links/) });
  });
});
