import { describe, expect, it } from 'vitest';
import { defaultDocumentName, parseSidecar, placeOfDrop } from '../../src/sources/drop-convention.ts';
import { ignoredReason, isSidecarName } from '../../src/sources/watch-ignore.ts';

const PERSON = '3F2504E0-4F89-11D3-9A0C-0305E82C3301';

describe('watch ignore rules', () => {
  it.each([
    ['.processed/3f25/a.pdf', 'dotfile or dot-folder'],
    ['.failed/x.pdf', 'dotfile or dot-folder'],
    [`${PERSON}/.DS_Store`, 'dotfile or dot-folder'],
    [`${PERSON}/.~lock.a.odt#`, 'dotfile or dot-folder'],
    [`${PERSON}/scan.pdf.tmp`, 'temporary file'],
    [`${PERSON}/scan.PDF.PART`, 'temporary file'],
    [`${PERSON}/big.zip.crdownload`, 'temporary file'],
    [`${PERSON}/~$letter.docx`, 'Office lock file'],
    ['a\\.git\\config', 'dotfile or dot-folder'],
  ])('ignores %s (%s)', (rel, reason) => {
    expect(ignoredReason(rel)).toBe(reason);
  });

  it.each([`${PERSON}/scan.pdf`, `${PERSON}/scan.pdf.json`, 'stray.pdf', `${PERSON}/~letter.docx`, `${PERSON}/temp.pdf`, ''])('takes %s', (rel) => {
    expect(ignoredReason(rel)).toBeUndefined();
  });

  it('tells sidecars from JSON documents by their double extension', () => {
    expect(isSidecarName('scan.pdf.json')).toBe(true);
    expect(isSidecarName('report.json')).toBe(false);
    expect(isSidecarName('.x.json')).toBe(false);
  });
});

describe('drop convention', () => {
  it('reads the person from the folder, lower-cased', () => {
    expect(placeOfDrop(`${PERSON}/scan.pdf`)).toEqual({ ok: true, personId: PERSON.toLowerCase(), fileName: 'scan.pdf' });
  });

  it.each([
    ['stray.pdf', 'not inside a person folder'],
    ['people/scan.pdf', 'folder "people" is not a person id (GUID)'],
    [`${PERSON}/sub/scan.pdf`, 'nested folder'],
  ])('sets aside %s', (rel, reason) => {
    const place = placeOfDrop(rel);
    expect(place.ok).toBe(false);
    expect(place.ok ? '' : place.reason).toContain(reason);
  });

  it('names a document after its file without the extension', () => {
    expect(defaultDocumentName('ID card.front.jpg')).toBe('ID card.front');
    expect(defaultDocumentName('README')).toBe('README');
  });

  it('parses sidecars strictly', () => {
    expect(parseSidecar(`\uFEFF{"name":" Passport ","description":"","publicId":"${PERSON}"}`)).toEqual({ name: 'Passport', publicId: PERSON.toLowerCase() });
    expect(parseSidecar('{}')).toEqual({});
    expect(() => parseSidecar('{"name": ')).toThrow(/not valid JSON/);
    expect(() => parseSidecar('[1]')).toThrow(/JSON object/);
    expect(() => parseSidecar('{"nmae":"x"}')).toThrow(/unknown key\(s\) nmae/);
    expect(() => parseSidecar('{"name":5}')).toThrow(/"name" must be a string/);
    expect(() => parseSidecar('{"publicId":"123"}')).toThrow(/not a GUID/);
    expect(() => parseSidecar(JSON.stringify({ name: 'x'.repeat(256) }))).toThrow(/longer than 255/);
  });
});
