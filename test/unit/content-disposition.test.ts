import { describe, expect, it } from 'vitest';
import { fileNameFromContentDisposition } from '../../src/api/content-disposition.ts';

describe('fileNameFromContentDisposition', () => {
  it.each([
    ['attachment; filename="id card.pdf"', 'id card.pdf'],
    ['attachment; filename=plain.txt', 'plain.txt'],
    ["attachment; filename=\"fallback.pdf\"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.pdf", 'naïve café.pdf'],
    ['attachment; filename="../../etc/passwd"', 'passwd'],
    ['attachment; filename="C:\\\\Windows\\\\evil.exe"', 'evil.exe'],
    ['attachment; filename=".."', undefined],
    ['attachment; filename="a\u0007b:c?.txt"', 'a_b_c_.txt'],
    ['inline', undefined],
    // Parsed by the content-disposition package: filename* wins, names are case-insensitive.
    ["attachment; filename*=UTF-8''%E2%82%AC%20rates.pdf; filename=\"EUR rates.pdf\"", '€ rates.pdf'],
    ["attachment; filename*=iso-8859-1''%E9t%E9.pdf", 'été.pdf'],
    ['attachment; FILENAME="Upper.PDF"', 'Upper.PDF'],
    ['attachment; filename="x.pdf";', 'x.pdf'],
    // Its decoding does not get past the safety rules.
    ["attachment; filename*=UTF-8''..%2F..%2Fetc%2Fcron.d%2Fx", 'x'],
    ["attachment; filename*=UTF-8''..%5C..%5Cboot.ini", 'boot.ini'],
    ["attachment; filename*=UTF-8''%2E%2E", undefined],
    ['attachment; filename="/abs/path/a.pdf"', 'a.pdf'],
    ['attachment; filename="unterminated', undefined],
  ])('%j → %j', (header, expected) => {
    expect(fileNameFromContentDisposition(header)).toBe(expected);
  });
  it('absent → undefined', () => expect(fileNameFromContentDisposition(undefined)).toBeUndefined());
});
